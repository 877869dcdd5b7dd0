"""The GPU check: what sampling, training and a hot swap cost on the device this runs on, in one short script.

    PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python bench/gpu.py [--shapes gpt2-small,t5-small] [--new-tokens 32]
        [--reps 3] [--train-pairs 64] [--budget-s 420]

Built for a lent GPU (the `device` tool), where it must finish in under 8 minutes; on a CPU it runs the same code
(with --shapes tiny-gpt2,tiny-t5 it takes seconds: that is how it is tested). For each shape (randomly initialised
models shaped like GPT-2 small and T5-small, bench/real_size.py; or the tiny test starters):
- sampling cost per comparison (3 candidates, the app's sampling loop), one prompt at a time (a web request with
  an empty buffer) and in prefetch batches, in fp32 and in bf16 (bf16 only where the device supports it);
- DPO seconds per 1,000 pairs at the default epochs, as the worker trains (worker/training.py), with and without
  LoRA, from --train-pairs generated pairs scaled linearly;
- hot-swap load time: loading the checkpoint onto the device in a process that has loaded it once.
- with two GPUs or more, the first shape's full DPO on 2 processes (TRAIN_PROCESSES=2, worker/distributed.py), seconds
  per 1,000 pairs, beside its one-process figure; the report says how many GPUs it saw.
Steps that would pass --budget-s are skipped and named. Writes bench/out/gpu.json and prints a
table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

from bench.common import OUT, cached_starter, machine, markdown_table, write_json

TINY = {"tiny-gpt2": "gpt2", "tiny-t5": "t5"}


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", default="gpt2-small,t5-small", help="gpt2-small, t5-small, tiny-gpt2, tiny-t5")
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--train-pairs", type=int, default=64)
    p.add_argument("--budget-s", type=float, default=420, help="skip what would start after this many seconds")
    p.add_argument("--out", type=Path, default=OUT / "gpu.json")
    return p.parse_args()


def shape_path(name: str) -> tuple[Path, str]:
    """(checkpoint folder, arch) of a shape."""
    if name in TINY:
        return cached_starter(TINY[name], "tiny"), TINY[name]
    from bench.real_size import SHAPES, build_shape

    return build_shape(name), SHAPES[name][0]


def dtypes(device: str) -> list[str]:
    """fp32 always; bf16 where the device runs it (CUDA with bf16 support, or any CPU)."""
    import torch

    bf16 = device == "cpu" or (device.startswith("cuda") and torch.cuda.is_bf16_supported())
    return ["fp32", "bf16"] if bf16 else ["fp32"]


def sampling_ms(path: Path, *, device: str, dtype: str, new_tokens: int, reps: int) -> dict:
    """ms per comparison, inline (1 prompt) and in a prefetch batch: median and range over reps."""
    import torch

    from app.lm.checkpoint import load_checkpoint
    from app.lm.sampling import sample_batch
    from app.versions.prefetch import MAX_BATCH
    from worker.corpus import make_prompts

    loaded = load_checkpoint(str(path), device=device)
    if dtype == "bf16":
        loaded.model.to(torch.bfloat16)
    texts = [loaded.format_prompt(t) for t in make_prompts(n=MAX_BATCH * (reps + 1), seed=5)]
    out = {}
    for label, batch in (("inline", 1), ("batch", MAX_BATCH)):
        sample_batch(loaded, model_prompts=texts[:batch], n=3, max_new_tokens=new_tokens, dedup_tries=0)  # warm-up
        times = []
        for rep in range(reps):
            prompts = texts[(rep + 1) * batch:(rep + 2) * batch]
            sync(device)
            started = time.perf_counter()
            sample_batch(loaded, model_prompts=prompts, n=3, max_new_tokens=new_tokens, seed=rep, dedup_tries=0)
            sync(device)
            times.append((time.perf_counter() - started) / batch * 1000)
        out[label] = {"median_ms": round(statistics.median(times), 2), "range_ms": [round(min(times), 2),
                                                                                    round(max(times), 2)]}
    del loaded
    return out


def sync(device: str) -> None:
    """Wait for the device's queued work, so a timer measures it."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def training_s_per_1000(path: Path, *, arch: str, n_pairs: int, lora: bool, processes: int = 1) -> float:
    """DPO seconds per 1,000 pairs at the default epochs, as the worker trains (the default spec, LoRA or not), on
    one process or on `processes` (TRAIN_PROCESSES)."""
    import functools

    from bench.retrain_cost import generated_clicks, spec_for
    from worker.distributed import train_in_processes
    from worker.training import train_causal, train_seq2seq

    spec = dataclasses.replace(spec_for(arch), lora=lora)
    template = json.loads((path / "manifest.json").read_text())["prompt_template"]
    pairs = generated_clicks(n_pairs, 0, template=template)[:n_pairs]
    loss_type, weights = (["sigmoid", "sft"], [1.0, spec.sft_weight]) if spec.sft_weight else (["sigmoid"], [1.0])
    train = train_seq2seq if arch == "t5" else train_causal
    if processes > 1:
        train = functools.partial(train_in_processes, processes=processes, arch="seq2seq" if arch == "t5" else arch)
    started = time.perf_counter()
    train(init_path=str(path), pairs=pairs, spec=spec, loss_type=loss_type, loss_weights=weights)
    return round((time.perf_counter() - started) / len(pairs) * 1000, 1)


def load_s(path: Path, *, device: str, reps: int) -> float:
    """Median seconds to load the checkpoint onto the device, once the process has loaded it before."""
    from app.lm.checkpoint import load_checkpoint

    load_checkpoint(str(path), device=device)
    times = []
    for _ in range(reps):
        sync(device)
        started = time.perf_counter()
        loaded = load_checkpoint(str(path), device=device)
        sync(device)
        times.append(time.perf_counter() - started)
        del loaded
    return round(statistics.median(times), 3)


def measure(models: dict[str, tuple[Path, str]], *, new_tokens: int, reps: int, train_pairs: int,
            budget_s: float) -> dict:
    """Every measurement for every {name: (checkpoint, arch)}, within the budget; what did not fit is listed under
    "skipped"."""
    import torch

    from app.lm.device import pick_device

    device, started = pick_device(), time.perf_counter()
    report = {"device": device, "gpus": torch.cuda.device_count(), "shapes": {}, "skipped": []}

    def within(what: str) -> bool:
        if time.perf_counter() - started < budget_s:
            return True
        report["skipped"].append(what)
        return False

    for name, (path, arch) in models.items():
        result = report["shapes"][name] = {"arch": arch, "sampling": {}, "training_s_per_1000_pairs": {}}
        for dtype in dtypes(device):
            if within(f"{name} sampling {dtype}"):
                result["sampling"][dtype] = sampling_ms(path, device=device, dtype=dtype, new_tokens=new_tokens,
                                                        reps=reps)
        for lora in (False, True):
            label = "lora" if lora else "full"
            if within(f"{name} training {label}"):
                result["training_s_per_1000_pairs"][label] = training_s_per_1000(path, arch=arch,
                                                                                 n_pairs=train_pairs, lora=lora)
        if within(f"{name} load"):
            result["hot_swap_load_s"] = load_s(path, device=device, reps=reps)
    report["two_process_training"] = two_processes(models, report, train_pairs=train_pairs, within=within)
    report["seconds"] = round(time.perf_counter() - started, 1)
    return report


def two_processes(models: dict[str, tuple[Path, str]], report: dict, *, train_pairs: int, within) -> dict | str:
    """The first shape's full DPO on 2 processes, beside its one-process figure; why not, without two GPUs."""
    if report["gpus"] < 2:
        return f"not run: {report['gpus']} GPU(s) here"
    first, (path, arch) = next(iter(models.items()))
    if not within(f"{first} training on 2 processes"):
        return "not run: past the budget"
    return {"shape": first, "one_process": report["shapes"][first]["training_s_per_1000_pairs"].get("full"),
            "s_per_1000_pairs": training_s_per_1000(path, arch=arch, n_pairs=train_pairs, lora=False, processes=2)}


def table(report: dict) -> str:
    """One row per shape and dtype."""
    rows = []
    for name, r in report["shapes"].items():
        for dtype, s in r["sampling"].items():
            rows.append([name, dtype, s["inline"]["median_ms"], s["batch"]["median_ms"],
                         r["training_s_per_1000_pairs"].get("full", "—"),
                         r["training_s_per_1000_pairs"].get("lora", "—"), r.get("hot_swap_load_s", "—")])
    return markdown_table(["shape", "dtype", "ms per comparison, inline", "ms per comparison, batched",
                           "DPO s per 1,000 pairs", "with LoRA", "load s"], rows)


def main() -> None:
    """Measure, print and write."""
    args = parse_args()
    models = {name: shape_path(name) for name in args.shapes.split(",")}
    report = measure(models, new_tokens=args.new_tokens, reps=args.reps, train_pairs=args.train_pairs,
                     budget_s=args.budget_s)
    print(table(report))
    print(f"device {report['device']}, {report['gpus']} GPU(s), {report['seconds']} s; "
          f"two processes: {report['two_process_training']}; skipped: {report['skipped'] or 'nothing'}")
    write_json(args.out, {"args": {k: str(v) for k, v in vars(args).items()}, "machine": machine(), **report})


if __name__ == "__main__":
    main()
