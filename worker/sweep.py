"""Startup sweep: runs left open by a worker that died are closed as failed."""

from __future__ import annotations

from sqlalchemy import select


def sweep_orphaned_runs() -> int:
    """Fail every run marked running: a fresh worker process means whoever ran it is gone.

    This assumes one training worker per queue (training is single flight), which is how
    prefloop deploys it. Queued runs stay queued: their jobs are still in Redis.
    """
    from app.extensions import db
    from app.jobs import fail_run
    from app.tables import TrainingRun

    runs = list(db.session.scalars(select(TrainingRun).where(TrainingRun.status == "running")))
    for run in runs:
        fail_run(run, "the worker stopped while this run was running (found by the startup sweep)")
    return len(runs)
