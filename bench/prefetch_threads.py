"""Torch threads for the prefetcher: ms per comparison of the sampling loop with 1 thread against more.

    PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python bench/prefetch_threads.py [--threads 1,2] [--batches 1,16]
        [--reps 5]

With requests handed to the prefetcher (SAMPLE_REQUESTS_IN=prefetcher) every comparison is sampled there, so its
thread count bounds what the web tier can hand out. The default GPT-2 starter, the served 80 new tokens, 3
candidates, duplicates resampled as served, 64 starter-task prompts per measurement, thread counts alternating
within each repetition (their order reversed every other one); on an otherwise idle machine. Medians and ranges.
Writes bench/out/prefetch_threads.json.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from bench.common import OUT, cached_starter, machine, markdown_table, write_json

PROMPTS = 64


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", default="1,2")
    p.add_argument("--batches", default="1,16")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--out", type=Path, default=OUT / "prefetch_threads.json")
    return p.parse_args()


def main() -> None:
    """Time every (batch, threads) cell and print the table."""
    import torch

    from app.lm.checkpoint import load_checkpoint
    from app.lm.sampling import sample_batch
    from worker.corpus import make_prompts

    args = parse_args()
    loaded = load_checkpoint(str(cached_starter("gpt2", "default")), device="cpu")
    prompts = [loaded.format_prompt(t) for t in make_prompts(n=PROMPTS, seed=1)]
    counts = [int(t) for t in args.threads.split(",")]
    rows, cells = [], []
    for batch in map(int, args.batches.split(",")):
        times: dict[int, list[float]] = {t: [] for t in counts}
        for rep in range(args.reps):
            for threads in (counts if rep % 2 == 0 else list(reversed(counts))):
                torch.set_num_threads(threads)
                started = time.perf_counter()
                for i in range(0, PROMPTS, batch):
                    sample_batch(loaded, model_prompts=prompts[i : i + batch], n=3, max_new_tokens=80,
                                 seed=rep * PROMPTS + i)
                times[threads].append((time.perf_counter() - started) / PROMPTS * 1000)
        base = statistics.median(times[counts[0]])
        for threads in counts:
            ms = statistics.median(times[threads])
            cells.append({"batch": batch, "threads": threads, "ms": times[threads]})
            rows.append([batch, threads, f"{ms:.1f} ({min(times[threads]):.1f}-{max(times[threads]):.1f})",
                         f"{base / ms:.2f}x"])
            print(rows[-1], flush=True)
    write_json(args.out, {"machine": machine(), "args": vars(args) | {"out": str(args.out)}, "cells": cells})
    print(markdown_table(["prompts per call", "threads", "ms/comparison, median (range)",
                          f"speed vs {counts[0]} thread(s)"], rows))


if __name__ == "__main__":
    main()
