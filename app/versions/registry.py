"""Model versions: register, list, check, and the one function that activates a version."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select, true, update

from app.platform.exceptions import BadInput, RegistryError
from app.platform.extensions import db
from app.platform.redis_client import publish_active
from app.tables import AuditEvent, ModelVersion, ServingState, utcnow
from app.versions.files import folder_mismatch
from app.versions.store import is_remote, local_copy, split_location


def lineage(version: ModelVersion) -> list[ModelVersion]:
    """The version, its parent, and so on to the first version of the lineage (the starter)."""
    chain, seen = [version], {version.id}
    while version.parent_id is not None and version.parent_id not in seen:
        parent = db.session.get(ModelVersion, version.parent_id)
        if parent is None:
            break
        seen.add(parent.id)
        chain.append(parent)
        version = parent
    return chain


def root_ancestor(version: ModelVersion) -> ModelVersion:
    """Follow parent links to the first version of the lineage (the starter)."""
    return lineage(version)[-1]


def find_version(version_id: int) -> ModelVersion:
    """The version, or a clear 404. Bounded first: an id past the integer column's range is an OverflowError in the
    driver, not a miss."""
    version = db.session.get(ModelVersion, version_id) if 1 <= version_id <= 2**31 - 1 else None
    if version is None:
        raise BadInput(f"version {version_id} not found", status=404)
    return version


def check_reason(reason) -> str:
    """An operator's reason for a change of what serves, or a clear 400: required, and no NUL (PostgreSQL text
    cannot hold one: a 500, not a reason)."""
    if not isinstance(reason, str) or not reason.strip():
        raise BadInput("a reason is required")
    if "\x00" in reason:
        raise BadInput("the reason contains a NUL character")
    return reason


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
    """The id the single serving pointer names, or None (read from the database, never the session's cache)."""
    return ServingState.active_id()


def check_checkpoint(version: ModelVersion, *, digests: bool = False, folder: Path | None = None) -> None:
    """Refuse a folder whose files do not match its manifest: missing, truncated, partial, or (digests) altered.

    Sizes are cheap and checked on every activation; the sha256 digests read every byte, so they are checked
    when a process loads the version (app/versions/serving.py), which it does once. A version in an object store
    is checked there for sizes; with digests, its local copy (downloaded and verified first) is checked here."""
    files = version.manifest.get("files")
    if is_remote(version.path):
        try:
            if not digests:
                bucket, number = split_location(version.path)
                bucket.check(number, files or {})
                return
            folder = folder or local_copy(version.path, files=files)
        except Exception as exc:  # noqa: BLE001 - an unreadable store or a bad copy refuses the version clearly
            raise RegistryError(f"version {version.id}: {exc}") from exc
    else:
        folder = Path(folder or version.path)
    if not folder.is_dir():
        raise RegistryError(f"version {version.id}: folder {folder} is missing")
    if files is None:
        return  # an external checkpoint registered without a manifest: nothing to compare
    if problem := folder_mismatch(folder, files, digests=digests):
        raise RegistryError(f"version {version.id}: {problem}")


# Attempts at the compare-and-set below before giving up: each lost attempt means another activation just won.
ACTIVATE_TRIES = 50


def activate_version(
    *, version_id: int, actor: str, reason: str, action: str = "activate", only_if_active: int | None = -1
) -> AuditEvent:
    """Point serving at version_id, audit it and notify the web processes.

    only_if_active: when not -1, move the pointer only if it still names that version
    (compare-and-set), so a finished run cannot override a rollback made while it trained.
    """
    check_reason(reason)
    for _ in range(ACTIVATE_TRIES):
        version = db.session.get(ModelVersion, version_id)
        if version is None:
            raise RegistryError(f"version {version_id} does not exist", 404)
        if version.status != "ready":
            raise RegistryError(f"version {version_id} is {version.status}; only ready versions can be activated")
        check_checkpoint(version)
        if db.session.get(ServingState, 1) is None:
            db.session.add(ServingState(id=1, version_id=None))
            db.session.flush()
        previous = active_version_id() if only_if_active == -1 else only_if_active
        # The update names the version it replaces, so the audit's "from" is what this very statement changed:
        # a concurrent activation between the read and the update makes it match no row, and this one tries again.
        moved = db.session.execute(
            update(ServingState)
            .where(ServingState.id == 1,
                   ServingState.version_id.is_(None) if previous is None else ServingState.version_id == previous)
            .values(version_id=version_id, changed_at=utcnow())
        ).rowcount
        if moved == 1:
            break
        db.session.rollback()
        if only_if_active != -1:
            raise RegistryError(f"the active version changed while this ran; version {version_id} was not activated")
    else:
        raise RegistryError(f"other activations kept winning; version {version_id} was not activated")
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


# The audit log's filters: which actions each kind of event is. Versions: everything not named here.
AUDIT_KIND_NAMES = ("versions", "annotation", "arena", "people", "all")
AUDIT_KINDS = {"annotation": ("undo_answer", "answer_changed", "flag_cleared", "flag_removed"),
               "arena": ("arena_pair_added", "arena_pair_removed"),
               "people": ("user_created", "user_changed", "user_token_rotated")}


def audit_log(*, limit: int = 100, kind: str = "all", offset: int = 0) -> list[AuditEvent]:
    """Most recent audit events first; kind "versions", "annotation", "arena" or "people" keeps only those."""
    stmt = select(AuditEvent).where(audit_kind_filter(kind))
    return list(db.session.scalars(stmt.order_by(AuditEvent.id.desc()).limit(limit).offset(offset)))


def audit_count(*, kind: str = "all") -> int:
    """How many audit events of a kind there are (for paging)."""
    return db.session.scalar(select(func.count(AuditEvent.id)).where(audit_kind_filter(kind))) or 0


def audit_kind_filter(kind: str):
    """SQL: the events of a kind. Versions is everything the other kinds do not name, so no kind of event (an
    annotator's hundred undos) can push the version history out of its view."""
    if kind == "versions":
        return AuditEvent.action.not_in([a for actions in AUDIT_KINDS.values() for a in actions])
    if kind in AUDIT_KINDS:
        return AuditEvent.action.in_(AUDIT_KINDS[kind])
    return true()


def record_event(*, actor: str, action: str, reason: str = "", detail: dict | None = None, **versions) -> None:
    """Write a non-activation audit event (a refused load, an undo, a rejected run)."""
    db.session.add(AuditEvent(actor=actor, action=action, reason=reason, detail=detail or {}, **versions))
    db.session.commit()


def challenger_version_id() -> int | None:
    """The challenger (PROMOTION=challenger), or None; a challenger that is already active counts as none."""
    challenger = ServingState.challenger_id()
    return challenger if challenger is not None and challenger != active_version_id() else None


def version_role(version_id: int, *, active_id: int | None, challenger_id: int | None) -> str | None:
    """"champion" for the active version, "challenger", or None (the registry's aliases, as MLflow's)."""
    return "champion" if version_id == active_id else "challenger" if version_id == challenger_id else None


def set_challenger(*, version_id: int, actor: str, reason: str) -> None:
    """Make a ready version the challenger; one at a time, so an earlier challenger is replaced (both audited)."""
    version = db.session.get(ModelVersion, version_id)
    if version is None or version.status != "ready":
        raise RegistryError(f"version {version_id} is not a ready version; only those can be the challenger", 409)
    if db.session.get(ServingState, 1) is None:
        db.session.add(ServingState(id=1, version_id=None))
        db.session.flush()
    previous = challenger_version_id()
    db.session.execute(update(ServingState).where(ServingState.id == 1).values(challenger_version_id=version_id))
    if previous is not None and previous != version_id:
        db.session.add(AuditEvent(actor=actor, action="challenger_replaced", from_version_id=previous,
                                  to_version_id=version_id, reason=f"version {version_id} replaces it: {reason}"))
    db.session.add(AuditEvent(actor=actor, action="challenger", from_version_id=active_version_id(),
                              to_version_id=version_id, reason=reason))
    db.session.commit()


def _check_challenger(version_id: int, reason: str) -> None:
    """Refuse a blank reason, or a version that is not the challenger (409)."""
    check_reason(reason)
    if challenger_version_id() != version_id:
        raise RegistryError(f"version {version_id} is not the challenger", 409)


def promote_challenger(*, version_id: int, actor: str, reason: str) -> AuditEvent:
    """Serve the challenger (through activate_version, the one way to change what is served); audited."""
    _check_challenger(version_id, reason)
    event = activate_version(version_id=version_id, actor=actor, reason=reason, action="promote")
    # After the activation: a crash in between leaves challenger == active, which counts as no challenger.
    db.session.execute(update(ServingState).where(ServingState.id == 1,
                                                  ServingState.challenger_version_id == version_id)
                       .values(challenger_version_id=None))
    db.session.commit()
    return event


def retire_challenger(*, version_id: int, actor: str, reason: str) -> None:
    """Drop the challenger role (the version stays ready: it can still be activated or compared); audited."""
    _check_challenger(version_id, reason)
    db.session.execute(update(ServingState).where(ServingState.id == 1,
                                                  ServingState.challenger_version_id == version_id)
                       .values(challenger_version_id=None))
    db.session.add(AuditEvent(actor=actor, action="challenger_retired", from_version_id=active_version_id(),
                              to_version_id=version_id, reason=reason.strip()))
    db.session.commit()
