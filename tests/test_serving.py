"""The per-process holder: a version whose bytes are wrong is refused, then retried with backoff until it loads."""

from __future__ import annotations

import shutil
from pathlib import Path

from sqlalchemy import func, select

from app.lm.checkpoint import read_manifest
from app.platform.extensions import db
from app.tables import AuditEvent
from app.versions import serving
from app.versions.registry import activate_version, register_version
from app.versions.serving import ModelHolder


def test_a_failed_load_is_retried_with_backoff_and_then_served(app, monkeypatch):
    """Version 2's weights are altered at the same size: the first load checks the sha256 digests and refuses it
    (version 1 keeps serving). Once the file is right again, the next try after the backoff serves it, without a
    restart; tries in between cost nothing and the audit log has one refusal."""
    clock = [1000.0]
    monkeypatch.setattr(serving.time, "monotonic", lambda: clock[0])
    store = Path(app.config["MODEL_STORE"])
    shutil.copytree(store / "1", store / "2")
    weights = store / "2" / "model.safetensors"
    good = weights.read_bytes()
    weights.write_bytes(good[:-16] + b"\0" * 16)  # the size check passes; only the digest can tell
    holder = ModelHolder(app)
    assert holder.current().version_id == 1
    with app.app_context():
        register_version(number=2, path=store / "2", manifest=read_manifest(store / "2"))
        activate_version(version_id=2, actor="test", reason="corrupt copy")

    holder.refresh(background=False)
    assert holder.serving().version_id == 1 and "sha256" in holder.status()["error"]
    weights.write_bytes(good)
    clock[0] += serving.RETRY_FIRST / 2
    holder.refresh(background=False)
    assert holder.serving().version_id == 1, "within the backoff: no new try"
    clock[0] += serving.RETRY_FIRST
    holder.refresh(background=False)
    assert holder.serving().version_id == 2 and holder.status()["error"] is None
    with app.app_context():
        refused = db.session.scalar(select(func.count()).select_from(AuditEvent)
                                    .where(AuditEvent.action == "load_failed"))
    assert refused == 1


def test_the_backoff_doubles_up_to_its_ceiling(app, monkeypatch):
    """A version that keeps failing is tried again after 5, 10, 20 ... seconds, at most RETRY_MAX apart."""
    clock = [0.0]
    monkeypatch.setattr(serving.time, "monotonic", lambda: clock[0])
    holder = ModelHolder(app)
    waits = []
    with app.app_context():
        for _ in range(9):
            holder._failed(1, RuntimeError("broken"))
            waits.append(holder._retry_at - clock[0])
    assert waits[:4] == [5.0, 10.0, 20.0, 40.0] and waits[-1] == serving.RETRY_MAX
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(AuditEvent)
                                 .where(AuditEvent.action == "load_failed")) == 1
