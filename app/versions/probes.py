"""Probes: a fixed set of inputs every version is sampled on (by the worker), to read two versions side by side."""

from __future__ import annotations

import hashlib
import random
from datetime import timedelta

from flask import current_app
from sqlalchemy import select

from app.platform.exceptions import BadInput
from app.platform.extensions import db
from app.platform.validation import clean_text
from app.tables import ProbeRevision, ProbeSamples, Prompt, utcnow
from app.versions.registry import find_version

DEFAULT_COUNT = 24  # inputs drawn from the pool for the first probe set
MAX_PROBES = 100  # each is sampled 3 times per version by the worker: the set stays small enough to read
SAMPLES = 3
STALE = timedelta(minutes=15)  # far longer than sampling a probe set takes (seconds on CPU for the starter)


def current_probes() -> ProbeRevision | None:
    """The probe set in force (the newest revision), or None before any."""
    return db.session.scalars(select(ProbeRevision).order_by(ProbeRevision.id.desc()).limit(1)).first()


def probe_revisions(*, limit: int = 20) -> list[ProbeRevision]:
    """Saved probe sets, newest first."""
    return list(db.session.scalars(select(ProbeRevision).order_by(ProbeRevision.id.desc()).limit(limit)))


def draw_probes(*, actor: str, count: int = DEFAULT_COUNT, seed: int = 0) -> ProbeRevision | None:
    """The first probe set: `count` pool prompts drawn once with a fixed seed, then frozen; None on an empty pool."""
    texts = list(db.session.scalars(select(Prompt.text).where(Prompt.removed_at.is_(None)).order_by(Prompt.id)))
    if not texts:
        return None
    return save_probes(inputs=random.Random(seed).sample(texts, min(count, len(texts))), actor=actor)


def ensure_probes(*, actor: str) -> ProbeRevision | None:
    """The probe set in force, drawing the first one from the pool if there is none yet."""
    return current_probes() or draw_probes(actor=actor)


def save_probes(*, inputs: list, actor: str) -> ProbeRevision:
    """Save a new probe set (a revision; earlier ones are kept): each input checked as a typed prompt, duplicates
    dropped, 1 to MAX_PROBES of them."""
    if not isinstance(inputs, list) or not inputs:
        raise BadInput("give at least one probe input")
    max_chars = current_app.config["MAX_INPUT_CHARS"]
    cleaned = list(dict.fromkeys(clean_text(t, field=f"probe {i + 1}", max_chars=max_chars)
                                 for i, t in enumerate(inputs)))
    if len(cleaned) > MAX_PROBES:
        raise BadInput(f"{len(cleaned)} probe inputs; the limit is {MAX_PROBES}", status=413)
    revision = ProbeRevision(inputs=cleaned, author=actor)
    db.session.add(revision)
    db.session.commit()
    return revision


def probe_seed(text: str) -> int:
    """The fixed seed of one probe input: the same for every version and every revision that keeps the input."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") % 2**31


def samples_of(*, version_id: int, revision_id: int) -> ProbeSamples | None:
    """A version's samples row for a probe revision, whatever its status."""
    return db.session.scalars(select(ProbeSamples).where(ProbeSamples.version_id == version_id,
                                                         ProbeSamples.revision_id == revision_id)).first()


def claim_samples(*, version_id: int, revision_id: int) -> tuple[ProbeSamples, bool]:
    """The version's samples row for the revision, made queued if missing or failed; (row, whether to sample)."""
    row = samples_of(version_id=version_id, revision_id=revision_id)
    # A job killed mid-way (the worker stopped) leaves its row running: after STALE it counts as failed.
    stale = row is not None and row.status in ("queued", "running") and utcnow() - row.created_at > STALE
    if row is not None and row.status != "failed" and not stale:
        return row, False
    if row is None:
        row = ProbeSamples(version_id=version_id, revision_id=revision_id)
        db.session.add(row)
    row.status, row.error, row.samples, row.created_at = "queued", "", [], utcnow()
    db.session.commit()
    return row, True


def request_samples(*, version_id: int, actor: str) -> ProbeSamples:
    """Have the worker sample a version on the probe set in force (a small job); a no-op when they exist or are
    being made. The web never samples probes itself."""
    from app.training.jobs import enqueue_probes

    find_version(version_id)
    revision = ensure_probes(actor=actor)
    if revision is None:
        raise BadInput("there is no probe set yet and the pool is empty: import prompts or save probe inputs", 409)
    row, queue = claim_samples(version_id=version_id, revision_id=revision.id)
    if queue:
        enqueue_probes(row)
    return row


def compare(*, a: int, b: int) -> dict:
    """Two versions' stored probe samples, input by input: {"revision", "probes": [{"input", "a", "b"}]}.

    409 with the reason while either version's samples are missing or still being made."""
    revision = current_probes()
    if revision is None:
        raise BadInput("there is no probe set yet: it is drawn when the first version is gated, or save one", 409)
    rows = {}
    for vid in (a, b):
        find_version(vid)
        row = samples_of(version_id=vid, revision_id=revision.id)
        if row is None:
            raise BadInput(f"version {vid} has no samples on probe set {revision.id} yet: request them "
                           f"(POST /api/model-versions/{vid}/probes, or the button on the versions page)", 409)
        if row.status != "ready":
            why = f": {row.error}" if row.status == "failed" else "; try again in a moment"
            raise BadInput(f"version {vid}'s probe samples are {row.status}{why}", 409)
        rows[vid] = {s["input"]: s["texts"] for s in row.samples}
    return {"revision": revision.id, "a": a, "b": b,
            "probes": [{"input": text, "a": rows[a].get(text, []), "b": rows[b].get(text, [])}
                       for text in revision.inputs]}


def probe_status(*, revision_id: int | None) -> dict[int, str]:
    """{version id: status of its samples} on a probe revision."""
    if revision_id is None:
        return {}
    return dict(db.session.execute(select(ProbeSamples.version_id, ProbeSamples.status)
                                   .where(ProbeSamples.revision_id == revision_id)).all())


def word_diff(old: str, new: str) -> list[tuple[str, str]]:
    """The words of `new` against `old` as (op, text) runs: "same", "del" (only in old) or "ins" (only in new), in
    reading order, as Prodigy's --diff shows two texts."""
    from difflib import SequenceMatcher

    a, b = old.split(), new.split()
    runs: list[tuple[str, str]] = []
    for op, i1, i2, j1, j2 in SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            runs.append(("same", " ".join(a[i1:i2])))
            continue
        if i2 > i1:
            runs.append(("del", " ".join(a[i1:i2])))
        if j2 > j1:
            runs.append(("ins", " ".join(b[j1:j2])))
    return runs
