"""The probe job: sample a version on the probe set (3 per input, the served settings, a fixed seed per input).

run_probes(samples_id) is what RQ runs for an older version. A training run samples its parent with sample_version
before its gate (when it has no samples yet), and the gate samples the new version itself (sample_probes): the
gate's diversity check reads both, and the new version's are then stored (store_samples), not made twice."""

from __future__ import annotations

import logging

from flask import current_app, has_app_context

from app.annotation.task import current_task
from app.lm.sampling import sample_batch, sampling_settings
from app.platform.extensions import db
from app.tables import ModelVersion, ProbeRevision, ProbeSamples, utcnow
from app.versions.probes import SAMPLES, claim_samples, ensure_probes, probe_seed, samples_of
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
        row.samples, row.settings = sample_probes(loaded, inputs=revision.inputs), probe_settings()
        row.status, row.finished_at = "ready", utcnow()
    except Exception as exc:  # noqa: BLE001 - stored for the page; the job itself fails too, for RQ's record
        db.session.rollback()
        row = db.session.get(ProbeSamples, row.id)
        row.status, row.error, row.finished_at = "failed", f"{type(exc).__name__}: {exc}"[:500], utcnow()
        db.session.commit()
        raise
    db.session.commit()


def probe_settings() -> dict:
    """The settings probes are sampled with: the served ones, SAMPLES per input."""
    return sampling_settings(current_app.config) | {"n": SAMPLES}


def sample_probes(loaded, *, inputs: list[str]) -> list[dict]:
    """[{"input", "texts", "raw"}] for a loaded version: the candidates as shown, and the first draw before any
    duplicate was resampled (what the gate measures diversity on)."""
    settings, system_prompt = probe_settings(), current_task().system_prompt
    samples = []
    for text in inputs:
        # One call per input: its own seed, so each input's samples do not depend on the others in the set.
        [(texts, raw)] = sample_batch(loaded, model_prompts=[loaded.format_prompt(text, system_prompt=system_prompt)],
                                      seed=probe_seed(text), **settings)
        samples.append({"input": text, "texts": texts, "raw": raw})
    return samples


def stored_samples(*, version_id: int, revision_id: int) -> list[dict] | None:
    """A version's ready samples on a revision, if they were made with today's settings and kept the raw draw
    (rows made before the gate read them did not); else None."""
    row = samples_of(version_id=version_id, revision_id=revision_id)
    if row is None or row.status != "ready" or row.settings != probe_settings():
        return None
    return row.samples if all("raw" in s for s in row.samples) else None


def store_samples(*, version_id: int, revision_id: int, samples: list[dict]) -> ProbeSamples:
    """Store samples made elsewhere (the gate's, of a version it just judged) as the version's ready row, unless it
    has a ready one already."""
    row, needed = claim_samples(version_id=version_id, revision_id=revision_id)
    if needed:
        row.samples, row.settings, row.status, row.finished_at = samples, probe_settings(), "ready", utcnow()
        db.session.commit()
    return row


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


def gate_probes(*, candidate, parent, parent_id: int, revision: ProbeRevision, trained: set[str]) -> dict:
    """The probe set's samples for a gate: the candidate's, sampled now (stored once the version is registered), and
    the parent's as stored (sampled again only when its row predates the raw draw or today's settings), paired by
    input on the probe inputs the run did not train on (trained inputs read as less diverse: the sft term repeats
    the chosen answers there)."""
    mine = sample_probes(candidate, inputs=revision.inputs)
    theirs = (stored_samples(version_id=parent_id, revision_id=revision.id)
              or sample_probes(parent, inputs=revision.inputs))
    raw = {s["input"]: s["raw"] for s in theirs}
    pairs = [{"input": s["input"], "candidate": s["raw"], "parent": raw[s["input"]]}
             for s in mine if s["input"] not in trained and s["input"] in raw]
    return {"revision_id": revision.id, "pairs": pairs, "candidate": mine}
