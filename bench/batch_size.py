"""The prefetch batch size: ms per comparison of the sampling loop and of generate() at several batch sizes.

    PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python bench/batch_size.py [--batches 8,16,32] [--new-tokens 16,80]
        [--reps 3]

The default GPT-2 starter, 1 torch thread, 3 candidates per prompt, no duplicate resampling (so both do the same
work), 64 starter-task prompts per measurement; the loop (app.lm.sampling.sample_batch) and the generate() call it
replaced (bench/real_size.generate_baseline) alternate within each repetition. Medians and ranges over --reps.
Writes bench/out/batch_size.json.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from bench.common import OUT, cached_starter, machine, markdown_table, write_json
from bench.real_size import generate_baseline

PROMPTS = 64


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", default="8,16,32")
    p.add_argument("--new-tokens", default="16,80")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--out", type=Path, default=OUT / "batch_size.json")
    return p.parse_args()


def main() -> None:
    """Time every (new tokens, batch) cell and print the table."""
    import torch

    from app.lm.checkpoint import load_checkpoint
    from app.lm.sampling import sample_batch
    from worker.corpus import make_prompts

    args = parse_args()
    torch.set_num_threads(1)
    loaded = load_checkpoint(str(cached_starter("gpt2", "default")), device="cpu")
    prompts = [loaded.format_prompt(t) for t in make_prompts(n=PROMPTS, seed=1)]
    rows, cells = [], []
    for tokens in map(int, args.new_tokens.split(",")):
        variants = {
            "loop": lambda ps, seed, t=tokens: sample_batch(loaded, model_prompts=ps, n=3, max_new_tokens=t,
                                                            seed=seed, dedup_tries=0),
            "generate": lambda ps, seed, t=tokens: generate_baseline(loaded, ps, max_new_tokens=t, seed=seed),
        }
        for batch in map(int, args.batches.split(",")):
            times: dict[str, list[float]] = {name: [] for name in variants}
            for rep in range(args.reps):
                for name in (list(variants) if rep % 2 == 0 else list(reversed(variants))):
                    started = time.perf_counter()
                    for i in range(0, PROMPTS, batch):
                        variants[name](prompts[i : i + batch], rep * PROMPTS + i)
                    times[name].append((time.perf_counter() - started) / PROMPTS * 1000)
            loop, gen = statistics.median(times["loop"]), statistics.median(times["generate"])
            cells.append({"new_tokens": tokens, "batch": batch, **times})
            rows.append([tokens, batch, f"{loop:.1f} ({min(times['loop']):.1f}-{max(times['loop']):.1f})",
                         f"{gen:.1f} ({min(times['generate']):.1f}-{max(times['generate']):.1f})",
                         f"{gen / loop:.2f}x"])
            print(rows[-1], flush=True)
    write_json(args.out, {"machine": machine(), "args": vars(args) | {"out": str(args.out)}, "cells": cells})
    print(markdown_table(["max new tokens", "prompts per call", "loop ms/comparison", "generate() ms/comparison",
                          "generate / loop"], rows))


if __name__ == "__main__":
    main()
