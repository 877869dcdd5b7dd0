"""The training job, top to bottom: spec, pairs, split, train, publish, gate, register or promote.

run_dpo(run_id) is what RQ runs. It takes the TrainingRun id, never ORM objects. Heavy imports (torch,
transformers, trl, peft) happen inside functions: the worker entry preloads them once.

Which model training starts from, and which model is the reference, matters more than any hyper-parameter:
plain DPO with start = reference = last version collapsed into gibberish within three rounds (docs/TRAINING.md).
So:
- start "base": train from the root ancestor (the starter) with it as the reference, on all clicks so far;
- start "active": train from the parent version with it as the reference, plus TRL's "sft" loss term.
"""

from __future__ import annotations

import logging
import time

from flask import current_app, has_app_context

from app.dataset.pairs import build_pairs
from app.dataset.snapshot import snapshot_clicks, snapshot_hash
from app.lm.checkpoint import DEFAULT_TEMPLATE, read_manifest
from app.platform.extensions import db
from app.tables import ModelVersion, TrainingRun, utcnow
from app.training.jobs import fail_run
from app.training.spec import TrainingSpec
from app.versions.registry import root_ancestor
from app.versions.store import local_copy
from worker.plan import click_of, error_summary, evaluation_texts, kto_examples, run_pairs, training_plan
from worker.progress import Progress

log = logging.getLogger(__name__)
# A run in one of these is done: a duplicate or re-queued delivery of its job (rq-dashboard's requeue, RQ's retry)
# must not train and publish again. Only a queued run trains; a failed one stays failed, a new Retrain is a new run.
FINISHED = ("succeeded", "rejected", "failed")


def run_dpo(run_id: str) -> dict:
    """RQ job: train, evaluate and register a new version for TrainingRun `run_id`; return a summary."""
    if has_app_context():
        return _run(run_id)
    from app import create_app

    with create_app().app_context():
        return _run(run_id)


def _run(run_id: str) -> dict:
    run = db.session.get(TrainingRun, run_id)
    if run is None:
        raise LookupError(f"training run {run_id} does not exist")
    if run.status in FINISHED:
        # A duplicate or re-queued delivery of a finished job: never train and publish a second version for one run.
        log.warning("run %s already finished (%s); nothing to do", run_id, run.status)
        return summary(run)
    run.status, run.started_at, run.finished_at, run.error = "running", utcnow(), None, ""
    db.session.commit()
    progress = Progress(run_id)
    try:
        train_and_register(run_id, progress)
    except BaseException as exc:
        mark_failed(run_id, exc, progress)
        raise
    return summary(db.session.get(TrainingRun, run_id))


def train_and_register(run_id: str, progress: Progress) -> None:
    """The job proper: each step's result feeds the next."""
    from app.lm.device import set_threads
    from worker.checkpoints import publish_checkpoint
    from worker.distributed import train_in_processes
    from worker.evaluation import gate_checkpoint
    from worker.training import trainer_for

    set_threads(current_app.config["TORCH_THREADS"])  # a no-op when the worker entry already did it
    started, run = time.perf_counter(), db.session.get(TrainingRun, run_id)

    # Spec: fixed by the web when it queued the run.
    spec = TrainingSpec.from_dict(run.config)
    parent = db.session.get(ModelVersion, run.parent_version_id) if run.parent_version_id else None
    if parent is None:
        raise LookupError(f"run {run_id}: parent version {run.parent_version_id} does not exist")
    base = root_ancestor(parent)
    init, loss_type, loss_weights = training_plan(spec, parent=parent, base=base)

    # Pairs: fixed when the run was requested (up to a preference id); inputs held out, both sides bounded.
    pairs = list(build_pairs(snapshot_clicks(run.snapshot)))
    train_pairs, heldout_pairs = run_pairs(pairs, spec=spec, parent=parent, snapshot=run.snapshot)
    if not train_pairs:
        raise ValueError(f"run {run_id}: the snapshot has no training pairs ({run.snapshot.get('clicks')} clicks)")
    data_hash = snapshot_hash(pairs)
    # KTO trains on each click's answers one by one, "all bad" ones too; the held-out pairs still gate it.
    examples = kto_examples(train_pairs, heldout_pairs, snapshot=run.snapshot) if spec.loss == "kto" else train_pairs
    progress.update(phase="training", total_steps=None, pairs=len(train_pairs), heldout=len(heldout_pairs))

    # Train: in this process, or the same step on TRAIN_PROCESSES processes (worker/distributed.py).
    step = dict(init_path=str(local_copy(init.path, keep={init.id})), pairs=examples, spec=spec,
                loss_type=loss_type, loss_weights=loss_weights, on_log=progress)
    if (processes := current_app.config["TRAIN_PROCESSES"]) > 1:
        model, tokenizer, trained = train_in_processes(processes=processes, arch=parent.arch, **step)
    else:
        model, tokenizer, trained = trainer_for(parent.arch)(**step)

    # Publish: the one place that writes checkpoints (temp folder, manifest, atomic rename).
    def save(tmp):
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)

    manifest = {
        "kind": "dpo", "arch": parent.arch, "base_model": base.base_model, "base_version": base.id,
        "parent_version": parent.id, "init_version": init.id, "reference_version": init.id, "run_id": run_id,
        "snapshot_hash": data_hash, "pair_count": len(pairs),
        "snapshot": snapshot_summary(run.snapshot, pairs, train_pairs, heldout_pairs, data_hash)
        | ({"kto_rows": len(examples), "kto_bad_rows": sum(not r["label"] for r in examples)}
           if spec.loss == "kto" else {}),
        "training": {**spec.to_dict(), "loss_type": loss_type, "loss_weights": loss_weights,
                     "device": trained.pop("device", str(model.device)), "processes": processes, "summary": trained},
        "prompt_template": (parent.manifest or {}).get("prompt_template", DEFAULT_TEMPLATE),
        # A child is prompted as its parent was: the clicks it trained on were rendered that way.
        **{k: v for k, v in (parent.manifest or {}).items() if k == "prompt_format"},
    }
    number, path = publish_checkpoint(store=current_app.config["MODEL_STORE"], save=save, manifest=manifest)

    # Gate: what was published, loaded as serving would load it, against the parent.
    progress.update(phase="evaluating")
    gate = gate_checkpoint(path=str(path), parent=parent, base=base, spec=spec, heldout_pairs=heldout_pairs,
                           eval_prompts=evaluation_texts(train_pairs, limit=2 * spec.gate.eval_prompts))

    # Register, then promote if it passed: the gate's result lives in the registry row.
    metrics = {**{k: v for k, v in gate.items() if not k.startswith("examples")}, "train_pairs": len(train_pairs),
               "loss_first": trained["loss_first"], "loss_last": trained["loss_last"],
               "seconds_training": trained["seconds"]}
    promote_or_reject(run_id=run_id, number=number, path=path, manifest=read_manifest(local_copy(path)),
                      parent=parent, metrics=metrics, started=started)

    # Probes: the new version's samples (and its parent's, the first time) for the side-by-side view.
    progress.update(phase="probes")
    sample_probes(versions=[number, parent.id], actor=f"run:{run_id}")
    progress.update(phase="done")


def sample_probes(*, versions: list[int], actor: str) -> None:
    """Sample each version on the probe set, where it has no samples yet. A failure is logged and kept on its row,
    never failing the run: the version is registered and judged already."""
    from worker.probes import sample_version

    for version_id in versions:
        try:
            sample_version(version_id, actor=actor)
        except Exception:  # noqa: BLE001 - the row says what failed; a button on the versions page retries
            log.exception("probe samples of version %s failed", version_id)


def snapshot_summary(snapshot: dict, pairs: list[dict], train_pairs: list[dict], heldout_pairs: list[dict],
                     data_hash: str) -> dict:
    """What the run trained on, for the manifest (clicks undone since the snapshot are missing from it)."""
    clicks = len({click_of(p) for p in pairs})
    return {
        "hash": data_hash, "pairs": len(pairs), "train_pairs": len(train_pairs),
        "train_clicks": len({click_of(p) for p in train_pairs}),
        "heldout_pairs": len(heldout_pairs), "max_preference_id": snapshot.get("max_preference_id"),
        "votes_until": snapshot.get("votes_until"),
        # Counted as answers: clicks plus, when TRAIN_ARENA_VOTES was on, the votes for a winner.
        "clicks": clicks,
        "missing_clicks": max(0, ((snapshot.get("clicks") or 0) + (snapshot.get("votes") or 0) or clicks) - clicks),
        "heldout_inputs": sorted({p["input"] for p in heldout_pairs}),
    }


def promote_or_reject(*, run_id: str, number: int, path, manifest: dict, parent: ModelVersion, metrics: dict,
                      started: float) -> None:
    """Register the version as ready or rejected; activate a ready one only if its parent still serves, or, with
    PROMOTION=challenger, make it the challenger."""
    from app.platform.exceptions import RegistryError
    from app.versions.registry import activate_version, record_event, register_version, set_challenger
    from worker.evaluation import why_passed

    actor, passed = f"run:{run_id}", bool(metrics["passed"])
    register_version(number=number, path=path, manifest=manifest, status="ready" if passed else "rejected",
                     metrics=metrics, run_id=run_id)
    metrics = {**metrics, "activated": False}
    note = ""
    if passed and current_app.config["PROMOTION"] == "challenger":
        # Served only once the arena (or an operator) says so: the champion keeps serving meanwhile.
        set_challenger(version_id=number, actor=actor, reason=f"run {run_id} passed the gate: {why_passed(metrics)}")
        metrics["challenger"] = True
    elif passed:
        try:
            activate_version(version_id=number, actor=actor, action="promote", only_if_active=parent.id,
                             reason=f"run {run_id} passed the gate: {why_passed(metrics)}")
            metrics["activated"] = True
        except RegistryError as exc:
            # A rollback (or another activation) happened while this trained: it wins, this version waits.
            note = f"version {number} passed the gate but was not activated: {exc}"
            metrics["not_activated_reason"] = str(exc)
            record_event(actor=actor, action="promote_skipped", reason=note, to_version_id=number)
    else:
        record_event(actor=actor, action="run_rejected", reason="; ".join(metrics["reasons"]), to_version_id=number)
    run = db.session.get(TrainingRun, run_id)
    metrics["seconds_total"] = round(time.perf_counter() - started, 2)
    run.version_id, run.metrics, run.error = number, metrics, note
    run.status, run.finished_at = ("succeeded" if passed else "rejected"), utcnow()
    db.session.commit()


def mark_failed(run_id: str, exc: BaseException, progress: Progress) -> None:
    """Record the failure on the row; a second failure here must not hide the first."""
    try:
        db.session.rollback()
        fail_run(db.session.get(TrainingRun, run_id), error_summary(exc))
        progress.update(phase="failed")
    except Exception:  # noqa: BLE001 - e.g. the database is down; the job's own exception is re-raised
        log.exception("could not mark run %s failed", run_id)


def summary(run: TrainingRun) -> dict:
    """What the job returns to RQ."""
    return {"run_id": run.id, "status": run.status, "version_id": run.version_id,
            "activated": (run.metrics or {}).get("activated", False), "metrics": run.metrics}
