"""Retrain cost and learning quality as clicks accumulate, with and without TRAIN_MAX_PAIRS (issue: bounded retrain).

    PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python bench/retrain_cost.py [--arch gpt2] [--clicks 200,2000,20000]
        [--bounds 2000,0] [--seeds 0,1,2] [--unbounded-max 4000]

Clicks are generated, not sampled from the model: each is one starter-task message (worker/corpus.py) with three
different rewrites written by the corpus's own generator, of random quality, and the politeness judge's pick
(bench/judges.py). That makes 20,000 clicks cheap to make; it is off-policy, which is said beside the figures.
For each click count and bound (0 = every pair, today's behaviour before the bound), the run's own steps are
called as the worker calls them: split_by_prompt, bound_pairs and bound_heldout (worker/plan.py) with the newest
tenth of the clicks as "new since the parent", then train_causal or train_seq2seq (worker/training.py) from the
default starter with its spec (app/jobs.training_config). Reported per cell: training seconds, pairs trained, and
quality: held-out preference accuracy (worker/evaluation.preference_scores, at most 500 held-out pairs) and the
politeness judge's good rate of 3 raw samples on 60 prompts no click used. Unbounded cells with more pairs than
--unbounded-max are not trained: their time is extrapolated from the measured pairs per second and marked so.
Writes bench/out/retrain_cost.json.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from pathlib import Path

from bench.common import OUT, cached_starter, machine, markdown_table, mean_range, write_json
from bench.judges import JUDGES


def generated_clicks(n: int, seed: int, *, template: str) -> list[dict]:
    """n clicks as DPO pairs (the judge's best of three generated rewrites against each other one)."""
    from worker.corpus import MIX, make_message, make_rewrite

    rng, judge = random.Random(seed), JUDGES["politeness"]
    kinds, weights = [k for k, _ in MIX], [w for _, w in MIX]
    pairs = []
    for pid in range(1, n + 1):
        message, slots = make_message(rng)
        texts: list[str] = []
        while len(texts) < 3:
            text = make_rewrite(rng.choices(kinds, weights)[0], slots, rng)
            if text not in texts:
                texts.append(text)
        best = max(texts, key=lambda t: (judge.score(message, t), rng.random()))
        pairs.extend({"prompt": template.replace("{input}", message), "chosen": " " + best, "rejected": " " + t,
                      "preference_id": pid, "input": message} for t in texts if t != best)
    return pairs


def train_cell(*, arch: str, starter, pairs: list[dict], bound: int, spec, seed: int) -> dict:
    """One retrain as the worker runs it; its time, size and quality."""
    from app.lm.checkpoint import load_checkpoint
    from bench.loop import heldout_prompts, measure, sample_model
    from worker.evaluation import pair_logps, preference_scores
    from worker.plan import bound_heldout, bound_pairs, split_by_prompt
    from worker.training import train_causal, train_seq2seq

    n_clicks = pairs[-1]["preference_id"]
    train, held = split_by_prompt(pairs, holdout=spec.holdout, seed=spec.seed)
    train = bound_pairs(train, max_pairs=bound, since=int(n_clicks * 0.9), seed=f"{seed}:{n_clicks}")
    held = bound_heldout(held, max_pairs=bound // 4 if bound else 500)[:500]
    fn = train_seq2seq if arch == "t5" else train_causal
    loss_type, weights = (["sigmoid", "sft"], [1.0, spec.sft_weight]) if spec.sft_weight else (["sigmoid"], [1.0])
    started = time.perf_counter()
    model, tokenizer, summary = fn(init_path=str(starter), pairs=train, spec=spec, loss_type=loss_type,
                                   loss_weights=weights)
    seconds = time.perf_counter() - started
    out = OUT / "retrain-cost" / f"{arch}-{n_clicks}-{bound}-{seed}"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "manifest.json").write_text((starter / "manifest.json").read_text())
    base = load_checkpoint(str(starter), device="cpu")
    trained = load_checkpoint(str(out), device="cpu")
    acc = preference_scores(trained, pair_logps(base, held, max_length=spec.max_length), held,
                            max_length=spec.max_length)["accuracy"]
    gen = {"temperature": spec.temperature, "top_p": spec.top_p, "min_p": spec.min_p,
           "max_new_tokens": spec.max_new_tokens}
    quality = measure(sample_model(out, heldout_prompts(60, pool=200), gen, seed=seed), JUDGES["politeness"], None)
    return {"clicks": n_clicks, "bound": bound, "seed": seed, "train_pairs": len(train), "heldout_pairs": len(held),
            "seconds": round(seconds, 1), "pairs_per_s": len(train) * spec.epochs / seconds, "heldout_accuracy": acc,
            "good_rate": quality["good_rate"], "well_formed": quality["well_formed"],
            "distinct": quality["distinct"], "extrapolated": False}


def spec_for(arch: str):
    """The default run spec, exactly as the web would queue it."""
    from flask_migrate import upgrade

    from app import create_app
    from app.training.jobs import training_config
    from app.training.spec import TrainingSpec

    app = create_app({"SQLALCHEMY_DATABASE_URI": "sqlite://", "SECRET_KEY": "bench-only", "MODEL_STORE": str(OUT)})
    with app.app_context():
        upgrade()  # the spec records the task in force: revision 1, which the migrations write
        return TrainingSpec.from_dict(training_config())


def summarize(cells: list[dict]) -> list[list]:
    """One row per (clicks, bound): mean and range over seeds."""
    rows = []
    for key in sorted({(c["clicks"], c["bound"]) for c in cells}):
        group = [c for c in cells if (c["clicks"], c["bound"]) == key]

        def stat(name, pct=False, group=group):
            return mean_range([c[name] for c in group], pct)

        est = " (extrapolated)" if group[0]["extrapolated"] else ""
        quality = ["—"] * 3 if est else [stat("heldout_accuracy"), stat("good_rate", True), stat("well_formed", True)]
        rows.append([key[0], key[1] or "none", group[0]["train_pairs"], stat("seconds") + est, *quality, len(group)])
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", choices=["gpt2", "t5"], default="gpt2")
    p.add_argument("--clicks", default="200,2000,20000")
    p.add_argument("--bounds", default="2000,0")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--unbounded-max", type=int, default=4000, help="train an unbounded cell only up to this many pairs")
    p.add_argument("--out", type=Path, default=None, help="default: bench/out/retrain_cost-ARCH.json")
    args = p.parse_args()
    import json

    import torch

    torch.set_num_threads(2)
    starter = cached_starter(args.arch, "default")
    template = json.loads((starter / "manifest.json").read_text())["prompt_template"]
    spec = spec_for(args.arch)
    cells: list[dict] = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for n in [int(c) for c in args.clicks.split(",")]:
            pairs = generated_clicks(n, seed, template=template)
            for bound in [int(b) for b in args.bounds.split(",")]:
                if bound and len(pairs) <= bound:
                    continue  # the bound does not apply: the unbounded cell is the same run
                if bound == 0 and len(pairs) > args.unbounded_max:
                    measured = [c for c in cells if c["seed"] == seed and c["bound"] == 0]
                    rate = statistics.fmean(c["pairs_per_s"] for c in measured) if measured else None
                    train_n = round(len(pairs) * (1 - spec.holdout))
                    cells.append({"clicks": n, "bound": 0, "seed": seed, "train_pairs": train_n,
                                  "seconds": train_n * spec.epochs / rate if rate else float("nan"),
                                  "extrapolated": True})
                    continue
                cell = train_cell(arch=args.arch, starter=starter, pairs=pairs, bound=bound, spec=spec, seed=seed)
                print(cell, flush=True)
                cells.append(cell)
    print(markdown_table(["clicks", "bound (pairs)", "pairs trained", "training s", "held-out acc.", "good rate",
                          "well-formed", "seeds"], summarize(cells)))
    write_json(args.out or OUT / f"retrain_cost-{args.arch}.json",
               {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}, "cells": cells})


if __name__ == "__main__":
    main()
