"""Startup sweep: runs left open by a worker that died or was stopped are closed as failed."""

from __future__ import annotations

from sqlalchemy import select


def sweep_orphaned_runs() -> int:
    """Fail every running run whose worker is gone, and every queued run whose job failed or is gone; return how many.

    A run's worker is gone when it was a process on this host that no longer runs (this fresh worker may be its
    restart), or when RQ no longer knows it. A run on another live host's worker is left to that worker: if that
    host dies, RQ moves the job to failed once its heartbeat expires, and app.training.jobs.reconcile closes the run. A
    queued run whose job is still in Redis stays queued; one whose job failed before the run started (a stop at
    that moment) is closed like the API would. Failed runs are final (worker/dpo.py FINISHED).
    """
    from app.platform.extensions import db
    from app.tables import TrainingRun
    from app.training.jobs import fail_run, reconcile

    runs = [run for run in db.session.scalars(select(TrainingRun).where(TrainingRun.status == "running"))
            if not worked_elsewhere(run.id)]
    for run in runs:
        fail_run(run, "the worker stopped while this run was running (found by the startup sweep)")
    queued = list(db.session.scalars(select(TrainingRun).where(TrainingRun.status == "queued")))
    closed = [run for run in queued if reconcile(run).status == "failed"]
    return len(runs) + len(closed)


def worked_elsewhere(run_id: str) -> bool:
    """Whether a live worker other than this process still has the run's job: on another host, or a process of
    this host that still runs."""
    import os
    import socket

    from rq import Worker
    from rq.exceptions import NoSuchJobError
    from rq.job import Job

    from app.platform.processes import pid_alive
    from app.platform.redis_client import get_redis
    from app.training.jobs import SERIALIZER

    conn = get_redis()
    if conn is None:
        return False
    try:
        name = Job.fetch(run_id, connection=conn, serializer=SERIALIZER).worker_name
        worker = Worker.find_by_key(Worker.redis_worker_namespace_prefix + name, connection=conn) if name else None
    except (NoSuchJobError, ValueError):
        return False
    if worker is None:
        return False
    if worker.hostname != socket.gethostname():
        return True
    return bool(worker.pid) and worker.pid != os.getpid() and pid_alive(worker.pid)
