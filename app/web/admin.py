"""Blueprint: the admin page: import prompts, export pairs, queue a DPO run and watch it."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_required

from app.accounts.users import add_user, change_user, find_user, list_users, new_token, require
from app.annotation.agreement import annotation_agreement
from app.annotation.answers import progress
from app.annotation.flags import open_flags, resolve_flag
from app.annotation.gold import gold_accuracy, import_gold, parse_gold_file
from app.annotation.prompts import import_prompts, parse_prompt_file
from app.annotation.task import current_task, list_revisions, render_guidelines, restore_task, save_task
from app.annotation.team import annotator_stats, stats_csv
from app.platform.exceptions import BadInput, QueueUnavailable
from app.platform.validation import file_label
from app.tables import ROLES
from app.training.jobs import get_run, list_runs, request_training, training_config
from app.web import schemas as s
from app.web.schemas import TrainingOverrides, override_bounds, parse

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.get("/")
@login_required
@require("import")
def index():
    """The admin page."""
    agreement, gold = annotation_agreement(), gold_accuracy()
    agreement_by = {row["annotator"]: row for row in agreement["annotators"]}
    gold_by = {row["annotator"]: row for row in gold["annotators"]}
    task = current_task()
    return render_template("admin/index.html", progress=progress(user_id=current_user.id, fresh=True),
                           runs=[s.run_body(r) for r in list_runs(limit=20)], defaults=training_config(),
                           bounds=override_bounds(), agreement=agreement, gold=gold, agreement_by=agreement_by,
                           gold_by=gold_by, annotator_names=sorted(agreement_by.keys() | gold_by.keys()),
                           task=task, revisions=list_revisions(limit=20), people=list_users(), roles=ROLES,
                           flags=open_flags(), team=annotator_stats(agreement=agreement, gold=gold),
                           guidelines_html=render_guidelines(task.guidelines))


@bp.post("/users")
@login_required
@require("users")
def create_person():
    """Create an account from the form, and show its password and token this once (never in a cookie or a log)."""
    try:
        user, password, token = add_user(actor=current_user, name=request.form.get("name", ""),
                                         role=request.form.get("role", ""))
    except BadInput as exc:
        flash(f"No account created: {exc}", "error")
        return redirect(url_for("admin.index", _anchor="people"))
    return render_template("admin/secret.html", name=user.name, role=user.role, password=password, token=token)


@bp.post("/users/<id:user_id>/change")
@login_required
@require("users")
def change_person(user_id: int):
    """Change a role, or disable or enable an account, from the people table."""
    action = request.form.get("action", "")
    try:
        name = find_user(user_id=user_id).name
        if action == "role":
            change_user(actor=current_user, name=name, role=request.form.get("role", ""))
        elif action in ("disable", "enable"):
            change_user(actor=current_user, name=name, disabled=action == "disable")
        else:
            raise BadInput("choose a role, disable or enable")
    except BadInput as exc:
        flash(f"Not changed: {exc}", "error")
        return redirect(url_for("admin.index", _anchor="people"))
    flash(f"{name}: {'role changed' if action == 'role' else action + 'd'}.", "ok")
    return redirect(url_for("admin.index", _anchor="people"))


@bp.post("/users/<id:user_id>/token")
@login_required
@require("users")
def rotate_person_token(user_id: int):
    """A new bearer token for the account, shown this once."""
    try:
        name = find_user(user_id=user_id).name
        token = new_token(actor=current_user, name=name)
    except BadInput as exc:
        flash(f"No new token: {exc}", "error")
        return redirect(url_for("admin.index", _anchor="people"))
    return render_template("admin/secret.html", name=name, token=token)


@bp.post("/flags/<id:flag_id>/resolve")
@login_required
@require("import")
def resolve(flag_id: int):
    """Clear a flag or remove its input from the pool, from the review list."""
    try:
        resolve_flag(flag_id=flag_id, action=request.form.get("action", ""), actor=current_user.name)
    except BadInput as exc:
        flash(f"Flag not resolved: {exc}", "error")
        return redirect(url_for("admin.index", _anchor="flags"))
    done = "removed from the pool" if request.form.get("action") == "remove_input" else "back in the queue"
    flash(f"Flag {flag_id} resolved: the input is {done}.", "ok")
    return redirect(url_for("admin.index", _anchor="flags"))


@bp.post("/task")
@login_required
@require("task")
def edit_task():
    """Save the task form as a new revision."""
    try:
        saved = save_task(question=request.form.get("question", ""), guidelines=request.form.get("guidelines", ""),
                          system_prompt=request.form.get("system_prompt", ""), author=current_user.name)
    except BadInput as exc:
        flash(f"Task not saved: {exc}", "error")
        return redirect(url_for("admin.index", _anchor="task"))
    flash(f"Saved the task as revision {saved.id}; annotators see it on their next comparison.", "ok")
    return redirect(url_for("admin.index", _anchor="task"))


@bp.post("/task/<id:revision>/restore")
@login_required
@require("task")
def restore(revision: int):
    """Make an earlier revision the task again (as a new revision)."""
    try:
        saved = restore_task(revision=revision, author=current_user.name)
    except BadInput as exc:
        flash(f"Not restored: {exc}", "error")
        return redirect(url_for("admin.index", _anchor="task"))
    flash(f"Revision {revision} restored as revision {saved.id}.", "ok")
    return redirect(url_for("admin.index", _anchor="task"))


@bp.get("/annotators.csv")
@login_required
@require("import")
def annotators_csv():
    """The per-annotator table as CSV."""
    return Response(stats_csv(annotator_stats()), mimetype="text/csv",
                    headers={"Content-Disposition": "attachment; filename=annotators.csv"})


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
        result = import_prompts(texts=texts, source=file_label(upload.filename),
                                max_chars=current_app.config["MAX_INPUT_CHARS"])
    except BadInput as exc:
        flash(f"Nothing imported: {exc}", "error")
        return redirect(url_for("admin.index"))
    flash(f"Imported {result['imported']} prompts ({result['duplicates']} already in the pool).", "ok")
    return redirect(url_for("admin.index"))


@bp.post("/gold")
@login_required
@require("import")
def upload_gold():
    """Import gold comparisons (with their expected answers) from an uploaded CSV or JSONL file."""
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        flash("Choose a .csv or .jsonl file of gold items to upload.", "error")
        return redirect(url_for("admin.index"))
    try:
        rows = parse_gold_file(data=upload.read(), filename=upload.filename)
        result = import_gold(rows=rows, source=file_label(upload.filename),
                             candidates=current_app.config["NUM_CANDIDATES"],
                             max_chars=current_app.config["MAX_INPUT_CHARS"])
    except BadInput as exc:
        flash(f"No gold items imported: {exc}", "error")
        return redirect(url_for("admin.index"))
    flash(f"Imported {result['imported']} gold items ({result['duplicates']} already there).", "ok")
    return redirect(url_for("admin.index"))


@bp.post("/retrain")
@login_required
@require("retrain")
def retrain():
    """Queue a DPO run from the form (or show the one already open)."""
    # Form fields are strings: the same model as the API's parses them (not strictly), with the same messages.
    values = {name: request.form[name].strip() for name in override_bounds() if request.form.get(name, "").strip()}
    try:
        overrides = parse(TrainingOverrides, values | {"lora": request.form.get("lora") == "on"}, strict=False)
        run, created = request_training(requested_by=current_user.name, overrides=overrides.model_dump())
    except (BadInput, QueueUnavailable) as exc:
        flash(f"Retrain not queued: {exc}", "error")
        return redirect(url_for("admin.index"))
    if not created:
        flash("A run is already queued or running; showing it.", "ok")
    return redirect(url_for("admin.run", run_id=run.id))


@bp.get("/runs/<run_id>")
@login_required
@require("retrain")
def run(run_id: str):
    """A run's live page: status, progress, curves and metrics."""
    return render_template("admin/run.html", run=s.run_body(get_run(run_id=run_id)))

