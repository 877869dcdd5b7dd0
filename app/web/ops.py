"""Blueprint: model versions and the audit log, for operators."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from app.accounts.users import require
from app.arena import battles, challenger, matchups
from app.platform.exceptions import BadInput, QueueUnavailable
from app.platform.extensions import db
from app.versions import probes
from app.versions.registry import (
    AUDIT_KIND_NAMES,
    activate_version,
    active_version_id,
    audit_count,
    audit_log,
    challenger_version_id,
    list_versions,
    promote_challenger,
    retire_challenger,
    rollback,
)
from app.versions.serving import get_holder
from app.web.schemas import query_id

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
        standings=(board := battles.standings()),
        arena_rows={r["version_id"]: r for r in board["versions"]},
        challenger_id=challenger_version_id(),
        standing=challenger.challenger_standing(),
        promotion=current_app.config["PROMOTION"],
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


@bp.post("/versions/<id:version_id>/promote")
@login_required
@require("activate")
def promote(version_id: int):
    """Serve the challenger, with a reason."""
    try:
        promote_challenger(version_id=version_id, actor=current_user.name, reason=request.form.get("reason", ""))
        flash(f"Challenger {version_id} promoted: it is now the champion and serves.", "ok")
    except BadInput as exc:
        flash(f"Not promoted: {exc}", "error")
    return redirect(url_for("ops.versions"))


@bp.post("/versions/<id:version_id>/retire")
@login_required
@require("activate")
def retire(version_id: int):
    """Drop the challenger, with a reason (the champion keeps serving)."""
    try:
        retire_challenger(version_id=version_id, actor=current_user.name, reason=request.form.get("reason", ""))
        flash(f"Challenger {version_id} retired; version {active_version_id()} keeps serving.", "ok")
    except BadInput as exc:
        flash(f"Not retired: {exc}", "error")
    return redirect(url_for("ops.versions"))


@bp.get("/versions/compare")
@login_required
@require("export")
def compare_page():
    """Two versions side by side on the probe set: each input, then each version's samples with a word diff."""
    versions = list_versions()
    ids = [v.id for v in versions]
    default_a = active_version_id() or (ids[0] if ids else None)
    default_b = challenger_version_id() or next((i for i in ids if i != default_a), None)
    picked, error, result = {}, None, None
    for key, default in (("a", default_a), ("b", default_b)):
        raw = request.args.get(key)
        try:
            picked[key] = query_id(raw, name=key) if raw is not None else default
        except BadInput as exc:
            error, picked[key] = str(exc), default
    if error is None and picked["a"] is not None and picked["b"] is not None:
        try:
            result = probes.compare(a=picked["a"], b=picked["b"])
        except BadInput as exc:
            error = str(exc)
    revision = probes.current_probes()
    return render_template("ops/compare.html", versions=versions, a=picked["a"], b=picked["b"],
                           result=result, error=error, word_diff=probes.word_diff, revision=revision,
                           revisions=probes.probe_revisions(),
                           status=probes.probe_status(revision_id=revision.id if revision else None))


@bp.post("/versions/<id:version_id>/probes")
@login_required
@require("retrain")
def request_probes(version_id: int):
    """Have the worker sample a version on the probe set."""
    try:
        row = probes.request_samples(version_id=version_id, actor=current_user.name)
        flash(f"Version {version_id}'s probe samples are {row.status}: the worker makes them in a minute or two; "
              "this page shows them when they are ready.", "ok")
    except BadInput as exc:
        flash(f"Not requested: {exc}", "error")
    except QueueUnavailable as exc:
        flash(f"Not requested: {exc}", "error")
    # Back to the pair being compared (ids only: a redirect target from a form is never taken as given).
    back = {k: v for k in ("a", "b") if (v := request.form.get(k, "")).isdecimal() and len(v) < 11}
    return redirect(url_for("ops.compare_page", **back))


@bp.post("/probes")
@login_required
@require("import")
def save_probes():
    """Save a new probe set from the form's text (one input per line)."""
    lines = [line for line in request.form.get("inputs", "").splitlines() if line.strip()]
    try:
        revision = probes.save_probes(inputs=lines, actor=current_user.name)
        flash(f"Probe set {revision.id} saved ({len(revision.inputs)} inputs). Versions are sampled on it when "
              "requested, and new versions at the end of their gate.", "ok")
    except BadInput as exc:
        db.session.rollback()
        flash(f"Not saved: {exc}", "error")
    return redirect(url_for("ops.compare_page"))
