"""python -m worker: app context once, torch threads, preload the ML stack, sweep orphans, work `training`.

`python -m worker COMMAND` runs one of the store commands instead (worker/commands.py).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys


def has_gpu() -> bool:
    """Detect an NVIDIA GPU without initialising CUDA (which must never happen before a fork)."""
    return os.path.exists("/dev/nvidia0") or shutil.which("nvidia-smi") is not None


def preload(threads: int) -> None:
    """Import the ML stack and the job's modules once, before any fork, and set torch threads."""
    # Before forking: each work-horse would otherwise re-import these for every job (see docs/BENCHMARKS.md).
    # The names, not just the packages: transformers and trl import their submodules lazily on first use.
    import transformers.models.gpt2.modeling_gpt2  # noqa: F401
    import transformers.models.t5.modeling_t5  # noqa: F401
    from datasets import Dataset  # noqa: F401
    from peft import LoraConfig, get_peft_model  # noqa: F401
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING  # noqa: F401
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer  # noqa: F401
    from trl import DPOConfig, DPOTrainer  # noqa: F401

    import app.lm.scoring  # noqa: F401
    import worker.dpo  # noqa: F401
    import worker.evaluation  # noqa: F401
    import worker.seq2seq_dpo  # noqa: F401
    import worker.training  # noqa: F401
    from app.lm.device import set_threads

    set_threads(threads)


def main(argv: list[str]) -> int:
    """A store command when one is named, else set up once and block working the queue."""
    from app import create_app

    app = create_app()
    app.app_context().push()  # every job (and each forked work-horse) inherits this context
    if argv:
        import click

        from worker.commands import COMMANDS

        group = click.Group("worker", commands={c.name: c for c in COMMANDS})
        return group.main(argv, prog_name="python -m worker", standalone_mode=True) or 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(message)s")
    url = app.config["REDIS_URL"]
    if not url:
        print("error: REDIS_URL is not set; the worker needs Redis", file=sys.stderr)
        return 2

    if app.config["WORKER_PRELOAD"]:
        preload(app.config["TORCH_THREADS"])
    else:
        os.environ.setdefault("OMP_NUM_THREADS", str(app.config["TORCH_THREADS"]))
    from worker.sweep import sweep_orphaned_runs

    swept = sweep_orphaned_runs()
    if swept:
        logging.info("marked %d orphaned run(s) failed", swept)

    from app.extensions import db

    # Forked work-horses must not share the parent's database connections: drop them now,
    # so each job opens its own.
    db.session.remove()
    db.engine.dispose()

    import redis
    from rq import SimpleWorker, Worker

    # With a GPU, run jobs in this process (SimpleWorker): CUDA cannot be re-initialised in a fork.
    mode = app.config["WORKER_MODE"]
    cls = SimpleWorker if mode == "simple" or (mode == "auto" and has_gpu()) else Worker
    conn = redis.Redis.from_url(url)
    logging.info("working queue 'training' with %s (preload %s)", cls.__name__, app.config["WORKER_PRELOAD"])
    cls(["training"], connection=conn).work(with_scheduler=False)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
