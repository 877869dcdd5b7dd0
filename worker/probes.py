"""The probe job: sample a version on the probe set (3 per input, the served settings, a fixed seed per input).

run_probes(samples_id) is what RQ runs for an older version; sample_version is also called at the end of a
training run's gate, for the new version (and its parent, when it has none yet)."""

from __future__ import annotations

import logging

from flask import current_app, has_app_context

from app.annotation.task import current_task
from app.lm.sampling import sample_batch, sampling_settings
from app.platform.extensions import db
from app.tables import ModelVersion, ProbeRevision, ProbeSamples, utcnow
from app.versions.probes import SAMPLES, claim_samples, ensure_probes, probe_seed
from app.versions.store import local_copy

log = logging.getLogger(__name__)


def run_probes(samples_id: int) -> dict:
    """RQ job: make the samples of ProbeSamples row `samples_id`; return its status."""
    if has_app_context():
        return _run(samples_id)
    from app import create_app

    with create_app().app_context():
        return _run(samples_id)


def _run(samples_id: int) -> dict:
    row = db.session.get(ProbeSamples, samples_id)
    if row is None:
        raise LookupError(f"probe samples {samples_id} do not exist")
    if row.status == "ready":
        return {"id": row.id, "status": row.status}  # a duplicate delivery
    fill(row)
    return {"id": row.id, "status": row.status}


def fill(row: ProbeSamples) -> None:
    """Sample the row's version on its probe revision and store the texts; a failure is stored on the row."""
    from app.lm.checkpoint import load_checkpoint

    row.status = "running"
    db.session.commit()
    try:
        version = db.session.get(ModelVersion, row.version_id)
        revision = db.session.get(ProbeRevision, row.revision_id)
        loaded = load_checkpoint(str(local_copy(version.path)), version_id=version.id)
        settings = sampling_settings(current_app.config) | {"n": SAMPLES}
        system_prompt = current_task().system_prompt
        samples = []
        for text in revision.inputs:
            # One call per input: its own seed, so each input's samples do not depend on the others in the set.
            prompt = loaded.format_prompt(text, system_prompt=system_prompt)
            [(texts, raw)] = sample_batch(loaded, model_prompts=[prompt], seed=probe_seed(text), **settings)
            # The first draw too, before duplicates were resampled: diversity is measured on it (bench/gate_probes.py).
            samples.append({"input": text, "texts": texts, "raw": raw})
        row.samples, row.settings, row.status, row.finished_at = samples, settings, "ready", utcnow()
    except Exception as exc:  # noqa: BLE001 - stored for the page; the job itself fails too, for RQ's record
        db.session.rollback()
        row = db.session.get(ProbeSamples, row.id)
        row.status, row.error, row.finished_at = "failed", f"{type(exc).__name__}: {exc}"[:500], utcnow()
        db.session.commit()
        raise
    db.session.commit()


def sample_version(version_id: int, *, actor: str) -> ProbeSamples | None:
    """At the end of a gate: sample a version on the probe set in force (drawn from the pool the first time)."""
    revision = ensure_probes(actor=actor)
    if revision is None:
        log.warning("no probe set and an empty pool: version %s has no probe samples", version_id)
        return None
    row, needed = claim_samples(version_id=version_id, revision_id=revision.id)
    if needed:
        fill(row)
    return row
