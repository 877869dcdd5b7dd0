"""Startup sweep: runs left open by a worker that died or was stopped are closed as failed."""

from __future__ import annotations

from sqlalchemy import select


def sweep_orphaned_runs() -> int:
    """Fail every run marked running, and every queued run whose job failed or is gone; return how many.

    A fresh worker process means whoever ran a running run is gone: this assumes one training worker per queue
    (training is single flight), which is how prefloop deploys it. A queued run whose job is still in Redis stays
    queued; one whose job failed before the run started (a stop at that moment) is closed like the API would.
    Failed runs are final: the job never trains them again (worker/dpo.py FINISHED).
    """
    from app.extensions import db
    from app.jobs import fail_run, reconcile
    from app.tables import TrainingRun

    runs = list(db.session.scalars(select(TrainingRun).where(TrainingRun.status == "running")))
    for run in runs:
        fail_run(run, "the worker stopped while this run was running (found by the startup sweep)")
    queued = list(db.session.scalars(select(TrainingRun).where(TrainingRun.status == "queued")))
    closed = [run for run in queued if reconcile(run).status == "failed"]
    return len(runs) + len(closed)
