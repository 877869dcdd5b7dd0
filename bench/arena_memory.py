"""Memory of the arena's resident versions: RSS of one process as it loads 1, 2, 3 and 4 copies of the starter.

    PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python bench/arena_memory.py [--arch gpt2] [--size default]

Each copy is loaded as app/versions/serving.py loads a version (load_checkpoint, eval mode, on the CPU), run once,
and kept, as
ModelHolder.resident keeps up to ARENA_RESIDENT_VERSIONS of them; the step between counts is what one more
resident version costs. Writes bench/out/arena_memory.json.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import tempfile
from pathlib import Path

from bench.common import OUT, cached_starter, machine, write_json


def rss_mb() -> float:
    """This process's resident set, in MB."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", default="gpt2")
    p.add_argument("--size", default="default", choices=["default", "tiny"])
    p.add_argument("--copies", type=int, default=4)
    args = p.parse_args()
    import torch

    from app.lm.checkpoint import load_checkpoint

    torch.set_num_threads(1)
    starter = cached_starter(args.arch, args.size)
    # Separate folders, as separate versions are: one file mapped several times would share its pages.
    tmp = Path(tempfile.mkdtemp(prefix="arena-memory-"))
    copies = [shutil.copytree(starter, tmp / str(i)) for i in range(args.copies + 1)]
    kept, steps = [], []
    load_checkpoint(copies.pop())  # imports and allocator warm-up, outside the figures
    gc.collect()
    before = rss_mb()
    for folder in copies:
        kept.append(load_checkpoint(folder))
        with torch.no_grad():  # one forward pass touches every weight, as the first battle would
            kept[-1].model(**kept[-1].tokenizer(["Fix the sink."], return_tensors="pt"),
                           **({"decoder_input_ids": torch.zeros((1, 1), dtype=torch.long)}
                              if kept[-1].is_seq2seq else {}))
        gc.collect()
        steps.append(round(rss_mb() - before, 1))
        before = rss_mb()
    params = sum(t.numel() for t in kept[0].model.parameters())
    result = {"command": f"PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python bench/arena_memory.py --arch {args.arch} "
                         f"--size {args.size} --copies {args.copies}",
              "machine": machine(), "params": params, "fp32_mb": round(params * 4 / 2**20, 1),
              "rss_step_mb": steps}
    write_json(OUT / "arena_memory.json", result)
    shutil.rmtree(tmp, ignore_errors=True)
    print(result)


if __name__ == "__main__":
    main()
