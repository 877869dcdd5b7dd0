"""The only web code that touches RQ: enqueue a training run (single flight) and reconcile its status; enqueue a
version's probe sampling."""

from __future__ import annotations

import re
import uuid
from contextlib import contextmanager

from flask import current_app
from rq.serializers import JSONSerializer
from sqlalchemy import select

from app.annotation.task import current_task
from app.dataset.snapshot import take_snapshot
from app.platform.exceptions import BadInput, QueueUnavailable
from app.platform.extensions import db
from app.platform.redis_client import get_redis
from app.tables import RUN_OPEN, ModelVersion, TrainingRun, utcnow
from app.training.spec import TrainingSpec
from app.versions.registry import active_version_id
from app.web.schemas import TrainingOverrides, parse

QUEUE = "training"
LOCK_KEY = "prefloop:retrain-lock"
OPEN = RUN_OPEN  # single flight: at most one run in these statuses
# The training queue's jobs are JSON, never pickle (RQ's default): a job's one argument is a run id, and unpickling
# what is in Redis would run whatever code whoever can write to Redis put there. The worker reads with the same.
# JSON alone does not stop a job naming another function (a JSON job "platform.node" ran): the worker runs only
# JOB_FUNCTIONS (worker/__main__.py, AllowedJob).
SERIALIZER = JSONSerializer
JOB_FUNCTION = "worker.dpo.run_dpo"
PROBE_FUNCTION = "worker.probes.run_probes"
JOB_FUNCTIONS = frozenset({JOB_FUNCTION, PROBE_FUNCTION})


def training_config(overrides: dict | None = None) -> dict:
    """The run's spec (app/training/spec.py) as JSON: settings from config, then the overrides TrainingOverrides allows.

    Fixed here, when the run is queued: the worker uses it as it is, so a setting changed later never changes a run.
    """
    overrides = parse(TrainingOverrides, overrides or {}).config_values()
    task = {"system_prompt": current_task().system_prompt}
    return TrainingSpec.from_config(current_app.config, overrides | task).to_dict()


def open_run() -> TrainingRun | None:
    """The queued or running run, if any."""
    return db.session.scalars(
        select(TrainingRun).where(TrainingRun.status.in_(OPEN)).order_by(TrainingRun.created_at.desc())
    ).first()


def request_training(*, requested_by: str, overrides: dict | None = None) -> tuple[TrainingRun, bool]:
    """Enqueue one DPO run; while one is open, return it instead (single flight). Returns (run, created)."""
    import redis

    config = training_config(overrides)
    refuse_unsupported(config)
    conn = get_redis()
    if conn is None:
        raise QueueUnavailable("no Redis is configured (REDIS_URL), so training cannot be queued")
    try:
        conn.ping()
    except redis.RedisError as exc:
        raise QueueUnavailable(f"Redis is unreachable ({exc.__class__.__name__}); training cannot be queued") from exc
    # Outside the lock: this pass grows with the clicks; under the lock only bounded steps remain. Whether a run is
    # already open is judged under the lock only: outside it, a run just committed by another request may not have
    # its job enqueued yet, and reconciling it would close it as lost (two runs were made in CI).
    snapshot, digest = take_snapshot(arena_votes=current_app.config["TRAIN_ARENA_VOTES"],
                                     overlap_pairs=current_app.config["OVERLAP_PAIRS"])
    with retrain_lock(conn):
        # End the read transaction the snapshot began: under SQLite's WAL it would keep showing the database as
        # it was before the lock, hiding a run another request created meanwhile (two runs were made in CI).
        db.session.commit()
        existing = current_open_run()
        if existing is not None:
            return existing, False
        minimum = current_app.config["TRAIN_MIN_PAIRS"]
        if snapshot["pairs"] < minimum:
            raise BadInput(f"not enough preferences to train: {snapshot['pairs']} pairs, at least {minimum} needed",
                           409)
        run = TrainingRun(id=uuid.uuid4().hex, requested_by=requested_by, config=config, snapshot=snapshot,
                          snapshot_hash=digest, parent_version_id=active_version_id())
        db.session.add(run)
        db.session.commit()
        enqueue(conn, run)
        return run, True


def refuse_unsupported(config: dict) -> None:
    """A run the worker could only fail: KTO on an encoder-decoder model (TRL's KTOTrainer is decoder-only)."""
    version = db.session.get(ModelVersion, active_version_id() or 0)
    if config["loss"] == "kto" and version is not None and version.arch == "seq2seq":
        raise BadInput(f"TRAIN_LOSS=kto trains decoder-only models, and version {version.id} is an encoder-decoder "
                       "model: set TRAIN_LOSS to sigmoid or ipo", 409)


def current_open_run() -> TrainingRun | None:
    """The open run, once reconciled with its job (a run whose job is gone is closed first)."""
    existing = open_run()
    return existing if existing is not None and reconcile(existing).status in OPEN else None


@contextmanager
def retrain_lock(conn):
    """Hold the lock that makes "check for an open run, then create one" atomic across every web process.

    What it covers is bounded (one query, one job fetch, one insert, one enqueue), so its 30 s cannot run out
    while a retrain is still being created, and let a second one start."""
    import redis

    try:
        lock = conn.lock(LOCK_KEY, timeout=30, blocking_timeout=10)
        if not lock.acquire():
            raise QueueUnavailable("another retrain request is being queued; try again")
    except redis.RedisError as exc:
        raise QueueUnavailable(f"Redis is unreachable ({exc.__class__.__name__}); training cannot be queued") from exc
    try:
        yield
    finally:
        try:
            lock.release()
        except redis.RedisError:
            pass  # the lock expires by itself


def enqueue(conn, run: TrainingRun) -> None:
    """Put the run's job on the training queue (JSON: its one argument is the run id)."""
    import redis
    from rq import Queue

    try:
        Queue(QUEUE, connection=conn, serializer=SERIALIZER).enqueue(
            JOB_FUNCTION, run.id, job_id=run.id,
            job_timeout=current_app.config["TRAIN_JOB_TIMEOUT"], result_ttl=7 * 86400, failure_ttl=7 * 86400,
        )
    except redis.RedisError as exc:
        fail_run(run, "could not enqueue: Redis is unreachable")
        raise QueueUnavailable("Redis is unreachable; training cannot be queued") from exc


def enqueue_probes(samples) -> None:
    """Queue the sampling of a version's probes (a ProbeSamples row, by id) on the worker's queue."""
    import redis
    from rq import Queue

    conn = get_redis()
    try:
        if conn is None:
            raise redis.ConnectionError("no REDIS_URL")
        Queue(QUEUE, connection=conn, serializer=SERIALIZER).enqueue(
            PROBE_FUNCTION, samples.id, job_timeout=600, result_ttl=86400, failure_ttl=7 * 86400)
    except redis.RedisError as exc:
        samples.status, samples.error = "failed", "could not enqueue: Redis is unreachable"
        db.session.commit()
        raise QueueUnavailable("Redis is unreachable; probe samples cannot be queued") from exc


def fail_run(run: TrainingRun, error: str) -> None:
    """Close a run as failed: the one place a run's failure is written (the web's reconcile, the worker's job and
    its startup sweep all call it)."""
    run.status, run.error, run.finished_at = "failed", error, utcnow()
    db.session.commit()


def reconcile(run: TrainingRun) -> TrainingRun:
    """Fail an open run whose RQ job failed or vanished (e.g. the worker was killed)."""
    import redis
    from rq.exceptions import NoSuchJobError
    from rq.job import Job

    if run.status not in OPEN:
        return run
    conn = get_redis()
    if conn is None:
        return run
    try:
        job = Job.fetch(run.id, connection=conn, serializer=SERIALIZER)
        status = job.get_status(refresh=True)
        if status == "started":
            # A worker host that died mid-run stops heartbeating; once its heartbeat expires (rq: at most the
            # monitoring interval + 60 s), RQ's cleanup moves the job to failed as abandoned. Other workers only do
            # that on their own schedule, so do it here, where a Retrain waits on the answer.
            from rq.registry import StartedJobRegistry

            StartedJobRegistry(QUEUE, connection=conn, serializer=SERIALIZER).cleanup()
            status = job.get_status(refresh=True)
    except NoSuchJobError:
        fail_run(run, "the job was lost from the queue")
        return run
    except redis.RedisError:
        return run  # cannot tell now; do not guess
    if status in ("failed", "stopped", "canceled"):
        db.session.refresh(run)
        if run.status in OPEN:
            fail_run(run, f"the job {status}: " + ((job.latest_result().exc_string or "")[-500:]
                                                   if job.latest_result() else "no details"))
    return run


def get_run(*, run_id: str) -> TrainingRun:
    """A run by id, reconciled with its job."""
    # Run ids are RQ job ids (ours: 32 hex digits): anything else (a NUL was a 500 on PostgreSQL) is no run.
    run = db.session.get(TrainingRun, run_id) if re.fullmatch(r"[A-Za-z0-9_-]{1,64}", run_id) else None
    if run is None:
        raise BadInput(f"training run {run_id[:64]!r} not found", 404)
    return reconcile(run)


def list_runs(*, limit: int = 50) -> list[TrainingRun]:
    """Most recent runs first."""
    return list(db.session.scalars(select(TrainingRun).order_by(TrainingRun.created_at.desc()).limit(limit)))
