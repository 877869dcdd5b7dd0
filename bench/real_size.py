"""What a real-size model costs on this machine: randomly initialised models shaped like GPT-2 small and T5-small.

    PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python bench/real_size.py [--shapes starter,gpt2-small,t5-small]
        [--new-tokens 32] [--reps 3] [--train-pairs 16]

Random weights are fine for timing, not for quality: such a model never ends a sample early, so every sample runs
to --new-tokens (a real rewrite of a short message is 15-30 GPT-2 tokens). The models use the starter's tokenizer
with the real vocabulary size, so the embedding and the output layer have their real cost. For each shape:
  - generation per comparison (3 candidates), inline (1 prompt per call, as a web worker does when the buffer is
    empty) and in prefetch batches (app.versions.prefetch.MAX_BATCH prompts), with the app's sampling loop and with the
    generate() call it replaced, alternating, reps times;
  - peak RSS of a fresh process that loads the model and samples one prefetch batch (a web worker's or the
    prefetcher's model share; Flask and the imports add about the same to each);
  - load time from disk in a process that has loaded it once (so the imports are paid), which is what a hot swap
    costs a running process (median of reps);
  - DPO training seconds per 1,000 pairs, from --train-pairs generated pairs trained as the worker trains them
    (worker/training.py, the default spec), scaled linearly.
Writes bench/out/real_size.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

from app.versions.files import file_digests
from bench.common import OUT, cached_starter, machine, markdown_table, write_json

SHAPES = {
    "gpt2-small": ("gpt2", dict(n_embd=768, n_layer=12, n_head=12, n_positions=1024, vocab_size=50257)),
    "t5-small": ("t5", dict(d_model=512, d_ff=2048, d_kv=64, num_layers=6, num_decoder_layers=6, num_heads=8,
                            vocab_size=32128)),
}


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", default="starter,gpt2-small,t5-small")
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--train-pairs", type=int, default=16)
    p.add_argument("--out", type=Path, default=OUT / "real_size.json")
    return p.parse_args()


def build_shape(name: str) -> Path:
    """A randomly initialised model of the named shape, saved with the starter's tokenizer and manifest."""
    if name == "starter":
        return cached_starter("gpt2", "default")
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    arch, dims = SHAPES[name]
    # Only its tokenizer and manifest are used; the tiny T5 builds in seconds, the default one does not.
    starter = cached_starter(arch, "default" if arch == "gpt2" else "tiny")
    out = OUT / "real-size" / name
    if not (out / "model.safetensors").is_file():
        config = AutoConfig.from_pretrained(starter)
        config.update(dims)
        cls = AutoModelForSeq2SeqLM if arch == "t5" else AutoModelForCausalLM
        model = cls.from_config(config)
        model.save_pretrained(out)
        for f in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
            (out / f).write_bytes((starter / f).read_bytes())
        # The starter's manifest with this folder's own files, so the registry's checks accept it (bench/load.py).
        manifest = json.loads((starter / "manifest.json").read_text()) | {"files": file_digests(out)}
        (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return out


def generate_baseline(loaded, prompts: list[str], *, max_new_tokens: int, seed: int) -> None:
    """What app.lm.sampling did before its own loop: one generate() call, num_return_sequences=3."""
    import torch

    from app.lm.sampling import _encode

    enc = _encode(loaded, prompts, max_new_tokens=max_new_tokens, max_input_tokens=256)
    torch.manual_seed(seed)
    with torch.inference_mode():
        loaded.model.generate(**enc, do_sample=True, num_return_sequences=3, temperature=1.0, top_p=0.95,
                              max_new_tokens=max_new_tokens, pad_token_id=loaded.tokenizer.pad_token_id)


def time_generation(path: Path, *, new_tokens: int, reps: int) -> dict:
    """ms per comparison for the loop and for generate(), inline and in prefetch batches."""
    from app.lm.checkpoint import load_checkpoint
    from app.lm.sampling import sample_batch
    from app.versions.prefetch import MAX_BATCH
    from worker.corpus import make_prompts

    loaded = load_checkpoint(str(path), device="cpu")
    texts = [loaded.format_prompt(t) for t in make_prompts(n=MAX_BATCH * reps, seed=5)]
    variants = {
        "loop": lambda ps, seed: sample_batch(loaded, model_prompts=ps, n=3, max_new_tokens=new_tokens, seed=seed,
                                              dedup_tries=0),
        "generate": lambda ps, seed: generate_baseline(loaded, ps, max_new_tokens=new_tokens, seed=seed),
    }
    result = {}
    for label, batch in (("inline", 1), ("prefetch", MAX_BATCH)):
        times: dict[str, list[float]] = {name: [] for name in variants}
        for rep in range(reps):
            prompts = texts[rep * batch : (rep + 1) * batch]
            order = list(variants) if rep % 2 == 0 else list(reversed(variants))
            for name in order:
                started = time.perf_counter()
                variants[name](prompts, rep)
                times[name].append((time.perf_counter() - started) / batch * 1000)
        for name, values in times.items():
            result[f"{name}_{label}_ms"] = statistics.median(values)
            result[f"{name}_{label}_range"] = [min(values), max(values)]
    return result


def measure_process(path: Path, *, new_tokens: int) -> dict:
    """Peak RSS and warm load time of a fresh process that loads the model and samples one prefetch batch.

    The peak includes a second copy while the second load runs, as a hot swap holds old and new at once."""
    code = f"""
import json, time, torch
torch.set_num_threads(1)
from app.lm.checkpoint import load_checkpoint
from app.lm.sampling import sample_batch
from app.versions.prefetch import MAX_BATCH
load_checkpoint({str(path)!r}, device="cpu")  # first: the imports a running process has already paid for
started = time.perf_counter()
loaded = load_checkpoint({str(path)!r}, device="cpu")
load_s = time.perf_counter() - started
sample_batch(loaded, model_prompts=[loaded.format_prompt("Call the plumber, the sink leaks again.")] * MAX_BATCH,
             n=3, max_new_tokens={new_tokens}, dedup_tries=0)
params = sum(p.numel() for p in loaded.model.parameters())
# VmHWM, not getrusage's ru_maxrss: that one survives exec, so it would report the parent's peak at fork time.
hwm = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({{"load_s": load_s, "peak_rss_mb": int(hwm.split()[1]) / 1024, "params_m": params / 1e6}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=1800)
    return json.loads(out.stdout.strip().splitlines()[-1])


def time_training(path: Path, *, arch: str, n_pairs: int) -> float:
    """DPO seconds per 1,000 pairs, as the worker trains (default spec), from n_pairs generated pairs."""
    from bench.retrain_cost import generated_clicks, spec_for
    from worker.training import train_causal, train_seq2seq

    spec = spec_for(arch)
    template = json.loads((path / "manifest.json").read_text())["prompt_template"]
    pairs = generated_clicks(n_pairs, 0, template=template)[:n_pairs]
    fn = train_seq2seq if arch == "t5" else train_causal
    loss_type, weights = (["sigmoid", "sft"], [1.0, spec.sft_weight]) if spec.sft_weight else (["sigmoid"], [1.0])
    started = time.perf_counter()
    fn(init_path=str(path), pairs=pairs, spec=spec, loss_type=loss_type, loss_weights=weights)
    return (time.perf_counter() - started) / (len(pairs) * spec.epochs) * 1000


def main() -> None:
    """Measure every shape and print the table."""
    import torch

    args = parse_args()
    torch.set_num_threads(1)  # as a web worker and the prefetcher run (TORCH_THREADS)
    rows = []
    for name in args.shapes.split(","):
        path = build_shape(name)
        arch = "t5" if name.startswith("t5") else "gpt2"
        cell = {"shape": name, **measure_process(path, new_tokens=args.new_tokens)}
        loads = [measure_process(path, new_tokens=1)["load_s"] for _ in range(args.reps - 1)]
        cell["load_s"] = statistics.median([cell["load_s"], *loads])
        cell.update(time_generation(path, new_tokens=args.new_tokens, reps=args.reps))
        torch.set_num_threads(2)  # the worker trains with the machine's cores
        cell["dpo_s_per_1000_pairs"] = time_training(path, arch=arch, n_pairs=args.train_pairs)
        torch.set_num_threads(1)
        rows.append(cell)
        print(json.dumps(cell), flush=True)
    write_json(args.out, {"machine": machine(), "args": vars(args) | {"out": str(args.out)}, "cells": rows})
    print(markdown_table(
        ["shape", "params", "inline ms/comparison (loop / generate)", "prefetch ms/comparison (loop / generate)",
         "peak RSS MB", "load s", "DPO s per 1,000 pairs"],
        [[c["shape"], f"{c['params_m']:.1f}M", f"{c['loop_inline_ms']:.0f} / {c['generate_inline_ms']:.0f}",
          f"{c['loop_prefetch_ms']:.0f} / {c['generate_prefetch_ms']:.0f}", f"{c['peak_rss_mb']:.0f}",
          f"{c['load_s']:.2f}", f"{c['dpo_s_per_1000_pairs']:.0f}"] for c in rows]))


if __name__ == "__main__":
    main()
