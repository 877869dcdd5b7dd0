"""What one comparison costs by batch size, and so the most a sampler can serve when each request waits at most
MAX_WAIT_SECONDS: the bound on what batching requests together (the hand-off) can gain on this machine.

    PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python bench/batch_cost.py [--shapes gpt2-small,t5-small,starter]
        [--sizes 1,2,4,8,12,16,24,32] [--threads 1,2] [--new-tokens 32] [--max-wait 10] [--reps 2]

For each shape (bench/real_size.py's randomly initialised models, which never end a sample early, or the
starter), torch thread count and batch size n: seconds per comparison c(n) with the app's sampling loop, median of
reps, sizes in alternating order. Then:
  - inline: what requests sampled alone serve, one per web process: cores / c(1) at the fewest threads measured
    (1 by default, as web processes run; two processes on this 2-core machine);
  - batched: the most one sampler serves with batches that end within MAX_WAIT_SECONDS of the request that waited
    longest: max 1 / c(n) over the n with n * c(n) <= max_wait (a request that arrived just as the batch started
    waits n * c(n); under overload they wait longer, so this is a ceiling);
  - the ratio of the two: the most the hand-off can gain over requests sampled alone at that MAX_WAIT_SECONDS.
Writes bench/out/batch_cost.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from bench.common import OUT, machine, markdown_table, write_json
from bench.real_size import build_shape


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", default="gpt2-small,t5-small,starter")
    p.add_argument("--sizes", default="1,2,4,8,12,16,24,32")
    p.add_argument("--threads", default="1,2")
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--max-wait", type=float, default=10.0, help="MAX_WAIT_SECONDS")
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--out", type=Path, default=OUT / "batch_cost.json")
    return p.parse_args()


def time_sizes(path: Path, *, sizes: list[int], threads: int, new_tokens: int, reps: int) -> dict[int, float]:
    """Seconds per comparison at each batch size (median of reps; sizes alternate in order between reps)."""
    import torch

    from app.lm.checkpoint import load_checkpoint
    from app.lm.sampling import sample_batch
    from worker.corpus import make_prompts

    torch.set_num_threads(threads)
    loaded = load_checkpoint(str(path), device="cpu")
    texts = [loaded.format_prompt(t) for t in make_prompts(n=max(sizes) * reps * len(sizes), seed=5)]
    sample_batch(loaded, model_prompts=texts[:2], n=3, max_new_tokens=4, seed=0, dedup_tries=0)  # warm up
    times: dict[int, list[float]] = {n: [] for n in sizes}
    start = 0
    for rep in range(reps):
        for n in sizes if rep % 2 == 0 else list(reversed(sizes)):
            prompts, start = texts[start:start + n], start + n
            began = time.perf_counter()
            sample_batch(loaded, model_prompts=prompts, n=3, max_new_tokens=new_tokens, seed=rep, dedup_tries=0)
            times[n].append((time.perf_counter() - began) / n)
    return {n: statistics.median(v) for n, v in times.items()}


def bound(costs: dict[int, float], *, inline: float, max_wait: float) -> dict:
    """The batched ceiling within max_wait, against requests sampled alone (`inline` comparisons a second)."""
    fits = [n for n, c in costs.items() if n * c <= max_wait]
    if not fits:
        return {"batch": None, "per_s": 0.0, "ratio": 0.0}
    best = min(fits, key=costs.__getitem__)
    return {"batch": best, "per_s": 1 / costs[best], "ratio": (1 / costs[best]) / inline}


def main() -> None:
    args = parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    threads = [int(t) for t in args.threads.split(",")]
    cores = os.cpu_count() or 1
    results, rows = [], []
    for shape in args.shapes.split(","):
        path = build_shape(shape)
        costs = {t: time_sizes(path, sizes=sorted(set(sizes) | {1}), threads=t, new_tokens=args.new_tokens,
                               reps=args.reps) for t in threads}
        inline = cores / costs[min(threads)][1]  # one request per process, at the fewest threads measured
        for t in threads:
            b = bound(costs[t], inline=inline, max_wait=args.max_wait)
            results.append({"shape": shape, "threads": t, "seconds_per_comparison": costs[t],
                            "inline_per_s": inline, "bound": b})
            rows.append([shape, t, *(f"{1000 * costs[t][n]:,.0f}" for n in sizes), f"{inline:.2f}",
                         b["batch"], f"{b['per_s']:.2f}", f"{b['ratio']:.2f}x"])
            print(rows[-1], flush=True)
    print(markdown_table(["shape", "threads", *(f"ms/comparison at {n}" for n in sizes),
                          f"alone, {cores} processes: /s", f"cheapest batch ending within {args.max_wait:g} s",
                          "its comparisons/s", "ceiling vs alone"], rows))
    write_json(args.out, {"args": vars(args) | {"out": str(args.out)}, "machine": machine(), "results": results})


if __name__ == "__main__":
    main()
