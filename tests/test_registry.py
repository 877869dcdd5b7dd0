"""The registry: checkpoint checks, and activations that race each other on SQLite and PostgreSQL."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import select

from app.lm.checkpoint import read_manifest
from app.platform.exceptions import RegistryError
from app.platform.extensions import db
from app.tables import AuditEvent, ModelVersion
from app.versions import registry
from app.versions.registry import activate_version, check_checkpoint, register_version
from tests.services import BOTH_BACKENDS

pytestmark = pytest.mark.parametrize("backend", BOTH_BACKENDS, indirect=True)


def copy_version(app, number: int) -> None:
    """Register a copy of version 1 as version `number`."""
    store = Path(app.config["MODEL_STORE"])
    shutil.copytree(store / "1", store / str(number))
    with app.app_context():
        register_version(number=number, path=store / str(number), manifest=read_manifest(store / str(number)))


def test_digests_catch_what_sizes_do_not(app):
    """Same sizes, other bytes: the cheap check passes (activation), the sha256 check refuses it (a load)."""
    copy_version(app, 2)
    weights = Path(app.config["MODEL_STORE"]) / "2" / "model.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-16:] = b"\0" * 16
    weights.write_bytes(bytes(raw))
    with app.app_context():
        version = db.session.get(ModelVersion, 2)
        check_checkpoint(version)
        with pytest.raises(RegistryError, match="sha256"):
            check_checkpoint(version, digests=True)
        check_checkpoint(db.session.get(ModelVersion, 1), digests=True)


def test_concurrent_activations_log_the_version_each_one_replaced(app, monkeypatch):
    """Activations that overlap (the read of the active version slowed down, so they do): the audit log is one
    chain, each event's "from" being the previous event's "to", because "from" is what the update replaced."""
    for number in (2, 3, 4, 5):
        copy_version(app, number)
    read = registry.active_version_id

    def slow_read():
        value = read()
        time.sleep(0.05)  # another activation commits in between
        return value

    monkeypatch.setattr(registry, "active_version_id", slow_read)
    errors, barrier = [], threading.Barrier(4)

    def activate(number: int) -> None:
        with app.app_context():
            barrier.wait()
            try:
                for _ in range(3):
                    activate_version(version_id=number, actor=f"op{number}", reason="race")
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

    threads = [threading.Thread(target=activate, args=(n,)) for n in (2, 3, 4, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with app.app_context():
        events = list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == "activate")
                                         .order_by(AuditEvent.id)))
        assert len(events) == 12 + 1  # the starter's own activation, then 4 x 3
        for before, after in zip(events, events[1:], strict=False):
            assert after.from_version_id == before.to_version_id, [(e.from_version_id, e.to_version_id)
                                                                   for e in events]
        assert registry.active_version_id() == events[-1].to_version_id


def test_a_compare_and_set_activation_still_refuses_a_moved_pointer(app):
    """A run's promotion names the version it expects to replace; if the pointer moved, it is refused."""
    copy_version(app, 2)
    copy_version(app, 3)
    with app.app_context():
        activate_version(version_id=2, actor="op", reason="manual")
        with pytest.raises(RegistryError, match="changed while this ran"):
            activate_version(version_id=3, actor="run:x", reason="promote", action="promote", only_if_active=1)
        event = activate_version(version_id=3, actor="run:x", reason="promote", action="promote", only_if_active=2)
        assert (event.from_version_id, event.to_version_id) == (2, 3)
