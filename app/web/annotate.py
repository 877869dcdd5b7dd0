"""Blueprint: the annotation page (its buttons call the JSON API)."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template, send_from_directory
from flask_login import current_user, login_required

from app.annotation.answers import progress
from app.annotation.comparisons import pending_comparison
from app.annotation.task import current_task, render_guidelines
from app.arena.battles import pending_battle, votes_by
from app.web import arena_schemas as a
from app.web import schemas as s

bp = Blueprint("annotate", __name__)


@bp.get("/")
@login_required
def index():
    """Render the page with the annotator's unanswered comparison, if any."""
    pending = pending_comparison(user_id=current_user.id)
    task = current_task()
    return render_template(
        "annotate/index.html",
        pending=s.comparison_body(pending) if pending else None,
        progress=progress(user_id=current_user.id),
        task=task, guidelines_html=render_guidelines(task.guidelines),
    )


@bp.get("/arena")
@login_required
def arena_page():
    """The arena: blind battles between two versions (its buttons call the JSON API)."""
    pending = pending_battle(user_id=current_user.id)
    return render_template("annotate/arena.html", pending=a.battle_body(pending) if pending else None,
                           votes=votes_by(user_id=current_user.id))


@bp.get("/my")
@login_required
def my_page():
    """Your past answers: search them and change one (its buttons call the JSON API)."""
    return render_template("annotate/my.html")


@bp.get("/favicon.ico")
def favicon():
    """The icon, for browsers and tools that ask for it by its old name (pages link the SVG)."""
    return send_from_directory(current_app.static_folder, "favicon.svg", mimetype="image/svg+xml", max_age=86400)


@bp.get("/healthz")
def healthz():
    """Liveness: the process answers."""
    return s.Health.respond(status="ok")
