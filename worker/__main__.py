"""python -m worker: app context once, torch threads, preload the ML stack, sweep orphans, work `training`.

Orphans are runs left running and temp checkpoint folders left half-written by a worker that is gone. A stop
signal interrupts the running job at once (StopNow): its run is marked failed and nothing is published after it.

`python -m worker COMMAND` runs one of the store commands instead (worker/commands.py).
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import sys
import time
from contextlib import suppress

from rq import SimpleWorker, Worker
from rq.exceptions import StopRequested
from rq.job import Job
from rq.worker import WorkerStatus

from app.platform.processes import die_with_parent  # imported before any fork: the work-horse calls it

# Seconds a work-horse gets to mark its run failed and exit after SIGTERM, before it is killed: make run's launcher
# waits 20 s in all (app/platform/launcher.py), so what is left of 30 s covers the web and the embedded Redis.
HORSE_GRACE = 10.0


class JobInterrupted(BaseException):
    """Raised inside a job when the worker is stopped; BaseException, so no `except Exception` in a library eats it."""


class StopNow:
    """On SIGTERM or SIGINT, interrupt the running job at once, rather than RQ's warm shutdown that waits for it.

    A retrain runs for minutes to hours, and RQ took a second signal within a second for a duplicate of the first:
    Ctrl-C on `make run` is exactly that (the terminal's SIGINT, then the launcher's or make's SIGTERM), so the
    worker kept training and published after the app had stopped. Here the first signal stops it, the job's own
    handler marks its run failed, and later signals change nothing.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._worker_pid = os.getpid()

    def request_stop(self, signum, frame) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        busy = self.get_state() == WorkerStatus.BUSY
        self.log.warning("worker: %s, stopping now%s", signal.Signals(signum).name,
                         ", interrupting the running job" if busy else "")
        self._stop_requested = True
        if not busy:
            raise StopRequested()
        if isinstance(self, SimpleWorker):
            raise JobInterrupted("the worker was stopped while this run was running")
        if self.horse_pid:
            stop_horse(self.horse_pid)
        raise SystemExit(0)

    def setup_work_horse_signals(self) -> None:
        """In the work-horse: Ctrl-C ignored (as in RQ), SIGTERM interrupts the job, and it dies with the worker."""
        super().setup_work_horse_signals()
        signal.signal(signal.SIGTERM, interrupt_job)
        # A worker killed outright (-9, OOM) takes its horse along at once, instead of leaving it to train and
        # publish as an orphan; its run stays running, and the next start's sweep fails it.
        die_with_parent(signal.SIGKILL)
        if os.getppid() != self._worker_pid:
            os._exit(1)  # the worker was already gone before that took effect


class JobNotAllowed(RuntimeError):
    """A job in the queue names a function (or callback) that is not one of ours."""


class AllowedJob(Job):
    """A job that runs only our job functions: anything else in Redis fails before its dotted name is imported."""

    @property
    def func(self):
        from app.training.jobs import JOB_FUNCTIONS

        if self.instance is not None or self.func_name not in JOB_FUNCTIONS:
            raise JobNotAllowed(f"job {self.id} names {self.func_name!r}, which is not one of this worker's jobs")
        return super().func

    def _callback(self, name: str):
        # We set no callbacks: one named in Redis would be imported and run like a job function.
        if getattr(self, name, None):
            raise JobNotAllowed(f"job {self.id} names a callback; this worker runs none")
        return None

    success_callback = property(lambda self: self._callback("_success_callback_name"))
    failure_callback = property(lambda self: self._callback("_failure_callback_name"))
    stopped_callback = property(lambda self: self._callback("_stopped_callback_name"))


class TrainingWorker(StopNow, Worker):
    """RQ's forking worker, stopped at once."""


class TrainingSimpleWorker(StopNow, SimpleWorker):
    """RQ's in-process worker (GPU), stopped at once."""


def interrupt_job(signum, frame) -> None:
    """SIGTERM in the work-horse: raise into the job, whose handler marks its run failed (later ones are ignored)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise JobInterrupted("the worker was stopped while this run was running")


def stop_horse(pid: int, grace: float = HORSE_GRACE) -> None:
    """SIGTERM the work-horse's group, SIGKILL it after `grace` seconds, and reap it."""
    signal.alarm(0)  # RQ times its wait for the horse with SIGALRM: no alarm may cut this wait short
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0]:
                return
        except ChildProcessError:
            return
        time.sleep(0.05)
    _signal_group(pid, signal.SIGKILL)
    with suppress(ChildProcessError):
        os.waitpid(pid, 0)


def _signal_group(pid: int, sig: int) -> None:
    """Signal the horse's process group (it makes its own right after the fork), else the horse alone."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        with suppress(ProcessLookupError):
            os.kill(pid, sig)


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
    from app.versions.store import Bucket, is_remote
    from worker.checkpoints import sweep_temp_folders
    from worker.sweep import sweep_orphaned_runs

    swept = sweep_orphaned_runs()
    if swept:
        logging.info("marked %d orphaned run(s) failed", swept)
    removed = sweep_temp_folders(app.config["MODEL_STORE"]) + sweep_temp_folders(app.config["MODEL_CACHE"])
    if is_remote(app.config["MODEL_STORE"]):
        try:
            removed += Bucket(app.config["MODEL_STORE"]).sweep()
        except Exception as exc:  # noqa: BLE001 - a store away now must not stop the worker; the next start sweeps
            logging.warning("could not sweep uncommitted uploads in %s: %s", app.config["MODEL_STORE"], exc)
    if removed:
        logging.info("removed %d unfinished checkpoint folder(s) or upload(s): %s", len(removed), ", ".join(removed))

    from app.platform.extensions import db

    # Forked work-horses must not share the parent's database connections: drop them now,
    # so each job opens its own.
    db.session.remove()
    db.engine.dispose()

    import redis

    from app.training.jobs import QUEUE

    # With a GPU, run jobs in this process (SimpleWorker): CUDA cannot be re-initialised in a fork.
    mode = app.config["WORKER_MODE"]
    cls = TrainingSimpleWorker if mode == "simple" or (mode == "auto" and has_gpu()) else TrainingWorker
    conn = redis.Redis.from_url(url)
    logging.info("working queue '%s' with %s (preload %s)", QUEUE, cls.__name__, app.config["WORKER_PRELOAD"])
    build_worker(cls, conn).work(with_scheduler=False)
    return 0


def build_worker(cls, conn):
    """The training queue's worker: JSON jobs, and only our job functions (AllowedJob)."""
    from app.training.jobs import QUEUE, SERIALIZER

    return cls([QUEUE], connection=conn, serializer=SERIALIZER, job_class=AllowedJob)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
