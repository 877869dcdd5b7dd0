"""Training on two processes (TRAIN_PROCESSES=2) against one: seconds and held-out accuracy, same pairs and seeds.

    PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python bench/train_processes.py [--arch gpt2] [--clicks 200]
        [--seeds 0,1,2]

For each seed: --clicks generated clicks (bench/retrain_cost.generated_clicks: the starter task's messages, three
generated rewrites, the politeness judge's pick), split by prompt as the worker splits them, then the default run
spec (as the web queues it, with the seed) trained three ways from the default starter: one process with one torch
thread (TORCH_THREADS' default), one process with two threads (what a 2-core machine could give one process), and
two processes with one thread each (worker/distributed.train_in_processes, gloo). Reported: training seconds and
held-out preference accuracy (worker/evaluation.preference_scores against the starter), mean and range over seeds,
and the speed-up of two processes over each one-process setting, as a median of the per-seed ratios.
Writes bench/out/train_processes-ARCH.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

from bench.common import OUT, cached_starter, machine, markdown_table, mean_range, write_json
from bench.retrain_cost import generated_clicks, spec_for

SETTINGS = (("1 process, 1 thread", 1, 1), ("1 process, 2 threads", 1, 2), ("2 processes, 1 thread each", 2, 1))


def train_once(*, arch: str, starter: Path, train: list[dict], held: list[dict], spec, processes: int,
               threads: int) -> dict:
    """One training step as the worker runs it; its seconds and held-out accuracy."""
    import os

    import torch

    from app.lm.checkpoint import load_checkpoint
    from worker.distributed import train_in_processes
    from worker.evaluation import pair_logps, preference_scores
    from worker.training import train_causal, train_seq2seq

    loss_type, weights = (["sigmoid", "sft"], [1.0, spec.sft_weight]) if spec.sft_weight else (["sigmoid"], [1.0])
    step = dict(init_path=str(starter), pairs=train, spec=spec, loss_type=loss_type, loss_weights=weights)
    torch.set_num_threads(threads)
    os.environ["TORCH_THREADS"] = str(threads)  # what the launched processes take
    started = time.perf_counter()
    if processes > 1:
        model, tokenizer, _ = train_in_processes(processes=processes, arch=arch, **step)
    else:
        model, tokenizer, _ = (train_seq2seq if arch == "t5" else train_causal)(**step)
    seconds = time.perf_counter() - started
    torch.set_num_threads(2)
    out = OUT / "train-processes" / f"{arch}-{processes}-{threads}-{spec.seed}"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "manifest.json").write_text((starter / "manifest.json").read_text())
    base = load_checkpoint(str(starter), device="cpu")
    acc = preference_scores(load_checkpoint(str(out), device="cpu"), pair_logps(base, held, max_length=spec.max_length),
                            held, max_length=spec.max_length)["accuracy"]
    return {"seconds": round(seconds, 1), "heldout_accuracy": acc}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", choices=["gpt2", "t5"], default="gpt2")
    p.add_argument("--clicks", type=int, default=200)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--out", type=Path, default=None, help="default: bench/out/train_processes-ARCH.json")
    args = p.parse_args()
    from worker.plan import split_by_prompt

    starter = cached_starter(args.arch, "default")
    template = json.loads((starter / "manifest.json").read_text())["prompt_template"]
    base_spec = spec_for(args.arch)
    cells = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        spec = replace(base_spec, seed=seed)
        train, held = split_by_prompt(generated_clicks(args.clicks, seed, template=template), holdout=spec.holdout,
                                      seed=seed)
        for name, processes, threads in SETTINGS:
            cell = {"setting": name, "seed": seed, "train_pairs": len(train), "heldout_pairs": len(held),
                    **train_once(arch=args.arch, starter=starter, train=train, held=held, spec=spec,
                                 processes=processes, threads=threads)}
            print(cell, flush=True)
            cells.append(cell)
    rows = []
    for name, _, _ in SETTINGS:
        group = [c for c in cells if c["setting"] == name]
        rows.append([name, group[0]["train_pairs"], mean_range([c["seconds"] for c in group]),
                     mean_range([c["heldout_accuracy"] for c in group]), len(group)])
    print(markdown_table(["setting", "pairs trained (seed 0)", "training s", "held-out acc.", "seeds"], rows))
    two = {c["seed"]: c["seconds"] for c in cells if c["setting"] == SETTINGS[2][0]}
    speedups = {name: round(statistics.median(c["seconds"] / two[c["seed"]] for c in cells if c["setting"] == name), 2)
                for name, _, _ in SETTINGS[:2]}
    print("speed-up of 2 processes over:", speedups)
    write_json(args.out or OUT / f"train_processes-{args.arch}.json",
               {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}, "cells": cells,
                "speedup_of_two_processes": speedups})


if __name__ == "__main__":
    main()
