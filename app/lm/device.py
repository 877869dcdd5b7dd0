"""Where models run: the device, the training precision and the torch thread count, chosen in one place."""

from __future__ import annotations

import os


def pick_device() -> str:
    """CUDA when present, else the CPU."""
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    # One of several training processes (worker/distributed.py): each takes the GPU torchrun gave it.
    return f"cuda:{os.environ['LOCAL_RANK']}" if int(os.environ.get("WORLD_SIZE", "1")) > 1 else "cuda"


def training_precision() -> dict:
    """bf16 or fp16 from the hardware: TRL's DPOConfig defaults to bf16 and refuses it on a CPU."""
    import torch

    if not torch.cuda.is_available():
        return {"bf16": False, "fp16": False, "use_cpu": True}
    bf16 = torch.cuda.is_bf16_supported()
    return {"bf16": bf16, "fp16": not bf16, "use_cpu": False}


def set_threads(n: int) -> None:
    """Torch threads for this process: one per process by default, since web, prefetcher and worker share the cores.

    With torch's default (all cores) in every process, one DPO job took 89.9 s instead of 12.5 s while the web
    sampled, and generation's worst case went from 64 ms to 1.9 s (measured on 2 cores).
    """
    import torch

    torch.set_num_threads(max(1, int(n)))


def lower_priority() -> None:
    """Run the calling thread, and the threads it starts, only on CPU that requests leave idle (SCHED_IDLE; nice 10
    where the OS has no such policy). Linux keeps both per thread: the prefetcher calls it first thing, the web's
    sampling thread as it starts."""
    # A request is a dozen round trips between a web worker and a database process, each woken in turn. At nice 10
    # a woken process still waits for the refill's time slice to run out, a few ms a round trip; any SCHED_IDLE
    # task is preempted at once (bench/load.py, Postgres p95 at 20 annotators: 76 ms at nice 10, 46 ms idle).
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        os.nice(10)
