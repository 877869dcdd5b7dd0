"""Latency of 3 candidates from ONE batched generate call (num_return_sequences=3) vs THREE n=1 calls,
and the cost per comparison when the prefetch refill samples 8 prompts in one call.

    PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python bench/generation.py [--iterations 30] [--threads 1,2] [--size tiny]

The variants alternate within every iteration (and swap which goes first each time), so a noisy neighbour
hits both alike. Prints a markdown table and writes bench/out/generation.json.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from bench.common import OUT, cached_starter, machine, markdown_table, summary_ms, write_json

SAMPLING = {"temperature": 1.0, "top_p": 0.95, "max_new_tokens": 40, "dedup_tries": 0}


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iterations", type=int, default=30, help="timed iterations per variant per model")
    p.add_argument("--warmup", type=int, default=3, help="untimed iterations of each variant first")
    p.add_argument("--archs", default="gpt2,t5", help="comma-separated starter architectures")
    p.add_argument("--size", choices=["default", "tiny"], default="default", help="starter size (default: served)")
    p.add_argument("--threads", default="1,2", help="comma-separated torch thread counts (the web uses 1)")
    p.add_argument("--store", type=Path, default=None, help="where starters are built/cached (bench/out/starters)")
    p.add_argument("--out", type=Path, default=OUT / "generation.json")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def one_call(loaded, text: str, seed: int) -> list[str]:
    """Three candidates from one batched generate call."""
    from app.lm.sampling import sample_candidates

    texts, _ = sample_candidates(loaded, model_prompt=loaded.format_prompt(text), n=3, seed=seed, **SAMPLING)
    return texts


def three_calls(loaded, text: str, seed: int) -> list[str]:
    """Three candidates from three n=1 generate calls with different seeds."""
    from app.lm.sampling import sample_candidates

    prompt = loaded.format_prompt(text)
    out = []
    for k in range(3):
        texts, _ = sample_candidates(loaded, model_prompt=prompt, n=1, seed=seed * 3 + k, **SAMPLING)
        out += texts
    return out


BATCH = 8


def batch_of_8(loaded, text: str, seed: int) -> list[str]:
    """Three candidates for each of 8 prompts in one call (the prefetch refill); returns the first prompt's."""
    from app.lm.sampling import sample_batch

    others = [t for t in BATCH_PROMPTS if t != text][: BATCH - 1]
    results = sample_batch(loaded, model_prompts=[loaded.format_prompt(t) for t in [text, *others]], n=3,
                           seed=seed, **SAMPLING)
    return results[0][0]


VARIANTS = {"one_call": one_call, "three_calls": three_calls, "batch_of_8": batch_of_8}
COMPARISONS_PER_CALL = {"one_call": 1, "three_calls": 1, "batch_of_8": BATCH}
BATCH_PROMPTS: list[str] = []  # filled by main()


def candidate_tokens(loaded, texts: list[str]) -> int:
    """How many tokens the decoded candidates hold (a proxy for how long generation ran)."""
    return sum(len(loaded.tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)


def bench_model(loaded, prompts: list[str], *, iterations: int, warmup: int) -> dict:
    """Time both variants on the same prompts, alternating their order every iteration."""
    for i in range(warmup):
        for fn in VARIANTS.values():
            fn(loaded, prompts[i % len(prompts)], 10_000 + i)
    times: dict[str, list[float]] = {name: [] for name in VARIANTS}
    tokens: dict[str, list[int]] = {name: [] for name in VARIANTS}
    for i in range(iterations):
        text = prompts[i % len(prompts)]
        order = list(VARIANTS) if i % 2 == 0 else list(reversed(VARIANTS))
        for name in order:
            started = time.perf_counter()
            texts = VARIANTS[name](loaded, text, i)
            times[name].append((time.perf_counter() - started) / COMPARISONS_PER_CALL[name])
            tokens[name].append(candidate_tokens(loaded, texts))
    out = {name: summary_ms(times[name]) | {"mean_candidate_tokens": round(statistics.fmean(tokens[name]) / 3, 1)}
           for name in VARIANTS}
    out["ratio_of_medians"] = round(out["three_calls"]["median_ms"] / out["one_call"]["median_ms"], 2)
    out["batch_ratio_of_medians"] = round(out["one_call"]["median_ms"] / out["batch_of_8"]["median_ms"], 2)
    return out


def table(results: list[dict]) -> str:
    """One markdown row per (model, threads)."""
    rows = []
    for r in results:
        one, three, batch = r["one_call"], r["three_calls"], r["batch_of_8"]
        rows.append([r["arch"], f"{r['params'] / 1e6:.1f}M", r["threads"], one["median_ms"], one["p95_ms"],
                     three["median_ms"], three["p95_ms"], f"{r['ratio_of_medians']:.2f}x", batch["median_ms"],
                     f"{r['batch_ratio_of_medians']:.2f}x",
                     f"{one['mean_candidate_tokens']} / {three['mean_candidate_tokens']}"])
    headers = ["model", "params", "threads", "1 call median ms", "1 call p95 ms", "3 calls median ms",
               "3 calls p95 ms", "3 calls / 1 call (medians)", "8 prompts in 1 call, per comparison, median ms",
               "1 call / per comparison in 8 (medians)", "tokens per candidate (1 / 3)"]
    return markdown_table(headers, rows)


def main() -> None:
    """Build or reuse the starters, time both variants per model and thread count, report."""
    args = parse_args()
    import torch

    from app.lm.checkpoint import load_checkpoint
    from worker.corpus import make_prompts

    archs = [a.strip() for a in args.archs.split(",") if a.strip()]
    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    paths = {arch: cached_starter(arch, args.size, store=args.store) for arch in archs}
    prompts = make_prompts(n=max(args.iterations, args.warmup, BATCH), seed=args.seed)
    BATCH_PROMPTS[:] = prompts
    results = []
    for n_threads in threads:
        torch.set_num_threads(n_threads)
        for arch in archs:
            loaded = load_checkpoint(str(paths[arch]), device="cpu")
            params = sum(p.numel() for p in loaded.model.parameters())
            print(f"timing {arch} ({params / 1e6:.1f}M params) with {n_threads} thread(s), "
                  f"{args.iterations} iterations per variant...", flush=True)
            r = bench_model(loaded, prompts, iterations=args.iterations, warmup=args.warmup)
            results.append({"arch": arch, "size": args.size, "params": params, "threads": n_threads} | r)
    print()
    print(table(results))
    write_json(args.out, {
        "benchmark": "generation: 3 candidates in one batched call vs three n=1 calls",
        "machine": machine(),
        "settings": SAMPLING | {"n": 3, "iterations": args.iterations, "warmup": args.warmup, "size": args.size},
        "models": {arch: str(path) for arch, path in paths.items()},
        "results": results,
        "table": table(results),
    })
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
