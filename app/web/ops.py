"""Blueprint: model versions and the audit log, for operators."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from app.accounts.users import require
from app.arena import battles, matchups
from app.platform.exceptions import BadInput
from app.platform.extensions import db
from app.versions.registry import (
    AUDIT_KIND_NAMES,
    activate_version,
    active_version_id,
    audit_count,
    audit_log,
    list_versions,
    rollback,
)
from app.versions.serving import get_holder

bp = Blueprint("ops", __name__, url_prefix="/ops")
AUDIT_PAGE = 100  # audit rows per page


@bp.get("/versions")
@login_required
@require("export")
def versions():
    """Lineage, metrics and the audit log (?audit=versions, the default, annotation, arena, people or all)."""
    kind = request.args.get("audit", "versions")
    kind = kind if kind in AUDIT_KIND_NAMES else "versions"
    page = request.args.get("page", "1")
    page = int(page) if page.isdecimal() and 0 < len(page) < 7 else 1
    total = audit_count(kind=kind)
    return render_template(
        "ops/versions.html",
        versions=list_versions(),
        active_id=active_version_id(),
        events=audit_log(kind=kind, limit=AUDIT_PAGE, offset=(page - 1) * AUDIT_PAGE),
        audit_kind=kind, audit_page=page, audit_pages=max(1, -(-total // AUDIT_PAGE)), audit_total=total,
        serving=get_holder(current_app._get_current_object()).status(),
        standings=battles.standings(),
        chosen_pairs=matchups.list_pairs(),
        battle_pairs=matchups.battle_pairs(),
    )


@bp.post("/arena/pairs")
@login_required
@require("activate")
def add_arena_pair():
    """Have the arena compare two chosen versions (instead of the active version against its parent)."""
    try:
        a, b = (int(request.form.get(k, "")) for k in ("a", "b"))
    except ValueError:
        flash("Not added: choose two versions.", "error")
        return redirect(url_for("ops.versions"))
    try:
        matchups.add_pair(a=a, b=b, actor=current_user.name)
        flash(f"The arena now compares versions {min(a, b)} and {max(a, b)}.", "ok")
    except BadInput as exc:
        db.session.rollback()
        flash(f"Not added: {exc}", "error")
    return redirect(url_for("ops.versions"))


@bp.post("/arena/pairs/<id:pair_id>/delete")
@login_required
@require("activate")
def remove_arena_pair(pair_id: int):
    """Stop comparing a chosen pair."""
    try:
        matchups.remove_pair(pair_id=pair_id, actor=current_user.name)
        flash("Pair removed.", "ok")
    except BadInput as exc:
        flash(f"Not removed: {exc}", "error")
    return redirect(url_for("ops.versions"))


@bp.post("/versions/<id:version_id>/activate")
@login_required
@require("activate")
def activate(version_id: int):
    """Activate (or roll back to) a version, with a reason."""
    try:
        activate_version(version_id=version_id, actor=current_user.name, reason=request.form.get("reason", ""))
        flash(f"Version {version_id} is now active.", "ok")
    except BadInput as exc:
        flash(f"Not activated: {exc}", "error")
    return redirect(url_for("ops.versions"))


@bp.post("/rollback")
@login_required
@require("activate")
def rollback_view():
    """Roll back to the active version's parent (or the previously active one)."""
    try:
        event = rollback(actor=current_user.name, reason=request.form.get("reason", "") or "rollback")
        flash(f"Rolled back from {event.from_version_id} to {event.to_version_id}.", "ok")
    except BadInput as exc:
        flash(f"Not rolled back: {exc}", "error")
    return redirect(url_for("ops.versions"))
