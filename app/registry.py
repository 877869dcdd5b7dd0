"""Model versions: register, list, check, and the one function that activates a version."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select, update

from app.extensions import db
from app.tables import AuditEvent, ModelVersion, ServingState, utcnow
from app.validation import BadInput


class RegistryError(BadInput):
    """A version cannot be activated; the message says why (409 unless it names a missing version)."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message, status)


def register_version(
    *,
    number: int,
    path: str | Path,
    manifest: dict,
    status: str = "ready",
    metrics: dict | None = None,
    run_id: str | None = None,
) -> ModelVersion:
    """Record a published checkpoint folder as version `number`."""
    version = ModelVersion(
        id=number,
        parent_id=manifest.get("parent_version"),
        path=str(path),
        arch=manifest.get("arch", "causal"),
        base_model=manifest.get("base_model", ""),
        status=status,
        run_id=run_id,
        metrics=metrics or manifest.get("metrics", {}),
        manifest=manifest,
    )
    db.session.add(version)
    db.session.commit()
    return version


def list_versions() -> list[ModelVersion]:
    """All versions, newest first."""
    return list(db.session.scalars(select(ModelVersion).order_by(ModelVersion.id.desc())))


def active_version_id() -> int | None:
    """The id the single serving pointer names, or None."""
    state = db.session.get(ServingState, 1)
    return state.version_id if state else None


def check_checkpoint(version: ModelVersion) -> None:
    """Refuse a folder whose files do not match its manifest (missing, truncated, or partial)."""
    folder = Path(version.path)
    files = version.manifest.get("files")
    if not folder.is_dir():
        raise RegistryError(f"version {version.id}: folder {folder} is missing")
    if files is None:
        return  # an external checkpoint registered without a manifest: nothing to compare
    for name, info in files.items():
        f = folder / name
        if not f.is_file():
            raise RegistryError(f"version {version.id}: {name} is missing")
        if f.stat().st_size != info["bytes"]:
            raise RegistryError(f"version {version.id}: {name} is {f.stat().st_size} bytes, expected {info['bytes']}")


def activate_version(
    *, version_id: int, actor: str, reason: str, action: str = "activate", only_if_active: int | None = -1
) -> AuditEvent:
    """Point serving at version_id, audit it and notify the web processes.

    only_if_active: when not -1, move the pointer only if it still names that version
    (compare-and-set), so a finished run cannot override a rollback made while it trained.
    """
    from app.redis_conn import publish_active

    if not isinstance(reason, str) or not reason.strip():
        raise BadInput("a reason is required")
    version = db.session.get(ModelVersion, version_id)
    if version is None:
        raise RegistryError(f"version {version_id} does not exist", 404)
    if version.status != "ready":
        raise RegistryError(f"version {version_id} is {version.status}; only ready versions can be activated")
    check_checkpoint(version)
    state = db.session.get(ServingState, 1)
    if state is None:
        db.session.add(ServingState(id=1, version_id=None))
        db.session.flush()
    stmt = update(ServingState).where(ServingState.id == 1)
    if only_if_active != -1:
        stmt = stmt.where(
            ServingState.version_id.is_(None) if only_if_active is None else ServingState.version_id == only_if_active
        )
    previous = active_version_id()
    result = db.session.execute(stmt.values(version_id=version_id, changed_at=utcnow()))
    if result.rowcount != 1:
        db.session.rollback()
        raise RegistryError(f"the active version changed while this ran; version {version_id} was not activated")
    version.activated_at = utcnow()
    event = AuditEvent(
        actor=actor, action=action, from_version_id=previous, to_version_id=version_id, reason=reason.strip()
    )
    db.session.add(event)
    db.session.commit()
    publish_active(version_id)
    return event


def previous_active_id() -> int | None:
    """The version that was active before the current one, from the audit log."""
    current = active_version_id()
    events = db.session.scalars(
        select(AuditEvent)
        .where(AuditEvent.action.in_(["activate", "rollback", "promote"]), AuditEvent.to_version_id == current)
        .order_by(AuditEvent.id.desc())
    )
    for event in events:
        if event.from_version_id is not None:
            return event.from_version_id
    return None


def rollback(*, actor: str, reason: str) -> AuditEvent:
    """Activate the active version's parent, or else the version that served before it."""
    current = db.session.get(ModelVersion, active_version_id() or -1)
    parent = db.session.get(ModelVersion, current.parent_id) if current and current.parent_id else None
    target = parent.id if parent and parent.status == "ready" else previous_active_id()
    if target is None:
        raise RegistryError("there is no earlier active version to roll back to")
    return activate_version(version_id=target, actor=actor, reason=reason, action="rollback")


def audit_log(*, limit: int = 100) -> list[AuditEvent]:
    """Most recent audit events first."""
    return list(db.session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)))


def record_event(*, actor: str, action: str, reason: str = "", detail: dict | None = None, **versions) -> None:
    """Write a non-activation audit event (a refused load, an undo, a rejected run)."""
    db.session.add(AuditEvent(actor=actor, action=action, reason=reason, detail=detail or {}, **versions))
    db.session.commit()


def version_json(version: ModelVersion, *, active_id: int | None) -> dict:
    """A version as the API returns it."""
    return {
        "id": version.id, "parent_id": version.parent_id, "status": version.status, "active": version.id == active_id,
        "arch": version.arch, "base_model": version.base_model, "run_id": version.run_id, "metrics": version.metrics,
        "pairs": version.manifest.get("pair_count"), "created_at": version.created_at.isoformat() + "Z",
        "activated_at": version.activated_at.isoformat() + "Z" if version.activated_at else None,
    }
