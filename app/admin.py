"""Blueprint: prompts, export and (later) retraining, for admins."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from app.preferences import progress
from app.prompts import import_prompts, parse_prompt_file
from app.users import require
from app.validation import BadInput

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.get("/")
@login_required
@require("import")
def index():
    """The admin page."""
    return render_template("admin/index.html", progress=progress(user_id=current_user.id))


@bp.post("/prompts")
@login_required
@require("import")
def upload_prompts():
    """Import an uploaded CSV or JSONL file into the pool."""
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        flash("Choose a .csv or .jsonl file to upload.", "error")
        return redirect(url_for("admin.index"))
    try:
        texts = parse_prompt_file(data=upload.read(), filename=upload.filename)
        result = import_prompts(texts=texts, source=f"upload:{upload.filename}",
                                max_chars=current_app.config["MAX_INPUT_CHARS"])
    except BadInput as exc:
        flash(f"Nothing imported: {exc}", "error")
        return redirect(url_for("admin.index"))
    flash(f"Imported {result['imported']} prompts ({result['duplicates']} already in the pool).", "ok")
    return redirect(url_for("admin.index"))
