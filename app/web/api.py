"""Blueprint: the JSON API. Bearer tokens for tools; the browser session (with CSRF) for the pages."""

from __future__ import annotations

import os

from flask import Blueprint, Response, abort, current_app, g, jsonify, request, stream_with_context
from flask_login import current_user

from app.accounts import users
from app.accounts.security import limit_typed_prompts
from app.accounts.users import acting_user, can, require, user_for_token
from app.annotation import answers, comparisons, flags, prompts, task, team
from app.annotation.agreement import annotation_agreement
from app.annotation.gold import gold_accuracy
from app.arena import battles, challenger
from app.dataset.export import FILES, check_format, export_lines, parquet_chunks
from app.platform.exceptions import BadInput
from app.platform.extensions import csrf
from app.training import jobs
from app.versions import probes, registry
from app.versions.serving import get_holder
from app.web import arena_schemas as a
from app.web import schemas as s
from app.web.openapi import openapi_spec

bp = Blueprint("api", __name__, url_prefix="/api")


@bp.before_request
def authenticate() -> None:
    """Resolve a bearer token; browser sessions must pass CSRF on writes."""
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        user = user_for_token(header.removeprefix("Bearer ").strip())
        if user is None:
            abort(401)
        g.api_user = user
    elif current_user.is_authenticated and request.method not in ("GET", "HEAD", "OPTIONS"):
        csrf.protect()


def json_body() -> dict:
    """The request's JSON object, or a clear 400 (checked before a model sees it: `{}` must not stand for junk)."""
    try:
        body = request.get_json(silent=True)
    except RecursionError:  # '[' * 100000: deeper than the parser goes (silent=True catches ValueError only)
        raise BadInput("the body is nested too deeply") from None
    if body is None:
        if request.get_data():
            raise BadInput("the body is not valid UTF-8 JSON")
        body = {}
    if not isinstance(body, dict):
        raise BadInput("the body must be a JSON object")
    return body


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3 description of this API."""
    return jsonify(openapi_spec(current_app))


@bp.post("/comparisons")
@require("annotate")
def create_comparison():
    """Sample candidates for a typed prompt (rate-limited per user), else your pending or the next pool comparison."""
    body = s.parse(s.NewComparison, json_body())
    if body.prompt is not None:
        # Checked first: an input the model cannot take is refused without counting against the typing limit.
        comparisons.check_typed_input(body.prompt)
        comparisons.refuse_if_busy()  # a typed prompt always samples: a busy model refuses it before it is counted
        limit_typed_prompts()
    # The id is read once: after the service commits, reading it from the user again costs a reload (a round trip).
    user_id = acting_user().id
    comparison = comparisons.create_comparison(user_id=user_id, input_text=body.prompt)
    return s.comparison_body(comparison, progress=answers.progress(user_id=user_id)), 201


@bp.get("/comparisons/<id:comparison_id>")
@require("annotate")
def get_comparison(comparison_id: int):
    """One of your comparisons."""
    comparison = comparisons.get_comparison(comparison_id=comparison_id, user_id=acting_user().id)
    return s.comparison_body(comparison)


@bp.post("/comparisons/<id:comparison_id>/answer")
@require("annotate")
def answer(comparison_id: int):
    """Store the annotator's answer; a repeat of the same answer returns the stored one (200)."""
    body = s.parse(s.AnswerBody, json_body())
    user_id = acting_user().id  # once, as in create_comparison
    pref, created = answers.record_answer(
        user_id=user_id, comparison_id=comparison_id, candidate_id=body.candidate_id,
        verdict=body.verdict or "choice", latency_ms=body.latency_ms, also_good=body.also_good,
    )
    return s.answer_body(pref, progress=answers.progress(user_id=user_id)), 201 if created else 200


@bp.put("/comparisons/<id:comparison_id>/answer")
@require("annotate")
def change_answer(comparison_id: int):
    """Change your answer: replaced while no run has read it, else superseded by a new one for the next run."""
    body = s.parse(s.AnswerBody, json_body())
    user_id = acting_user().id
    pref, mode = answers.change_answer(
        user_id=user_id, comparison_id=comparison_id, candidate_id=body.candidate_id,
        verdict=body.verdict or "choice", latency_ms=body.latency_ms, also_good=body.also_good,
    )
    return s.ChangedAnswer.respond(s.answer_body(pref, progress=answers.progress(user_id=user_id)), mode=mode)


@bp.get("/my/answers")
@require("annotate")
def my_answers():
    """Your answers, newest first, with their comparisons; ?q= searches the inputs; ?limit= (1-100) &offset=."""
    query = s.parse(s.MyAnswersQuery, request.args.to_dict(), strict=False)
    rows, total = answers.my_answers(user_id=acting_user().id, query=query.q, limit=query.limit,
                                     offset=query.offset)
    return s.MyAnswers.respond(answers=[s.my_answer_fields(r) for r in rows], total=total, limit=query.limit,
                               offset=query.offset)


@bp.post("/comparisons/<id:comparison_id>/undo")
@require("annotate")
def undo(comparison_id: int):
    """Undo your latest answer (only while it is the latest) and return its comparison again."""
    comparison = answers.undo_last_answer(user_id=acting_user().id, comparison_id=comparison_id)
    return s.comparison_body(comparison, progress=answers.progress(user_id=acting_user().id))


@bp.get("/task")
@require("annotate")
def get_task():
    """The task in force: the question above the candidates, the guidelines (Markdown), the system prompt."""
    return s.Task.respond(task.task_body(task.current_task()))


@bp.put("/task")
@require("task")
def put_task():
    """Save a new revision of the task (saving the text in force again returns it unchanged)."""
    body = s.parse(s.TaskText, json_body())
    saved = task.save_task(question=body.question, guidelines=body.guidelines, system_prompt=body.system_prompt,
                           author=acting_user().name)
    return s.Task.respond(task.task_body(saved))


@bp.post("/users")
@require("users")
def create_user():
    """Create an account (201): its password and bearer token are in this answer only."""
    body = s.parse(s.NewUser, json_body())
    user, password, token = users.add_user(actor=acting_user(), name=body.name, role=body.role)
    return s.UserCreated.respond(name=user.name, role=user.role, password=password, token=token), 201


@bp.patch("/users/<name>")
@require("users")
def change_user(name: str):
    """Change an account's role, or disable or enable it (its sessions and token stop at once when disabled)."""
    body = s.parse(s.UserChange, json_body())
    user = users.change_user(actor=acting_user(), name=name, role=body.role, disabled=body.disabled)
    return s.UserState.respond(name=user.name, role=user.role, disabled=user.disabled)


@bp.post("/users/<name>/token")
@require("users")
def rotate_user_token(name: str):
    """A new bearer token for the account (the old one stops working); shown this once."""
    return s.NewToken.respond(token=users.new_token(actor=acting_user(), name=name))


@bp.post("/comparisons/<id:comparison_id>/flag")
@require("annotate")
def flag(comparison_id: int):
    """Flag your comparison for review (201; the same flag again: 200); its pool input waits until it is resolved."""
    body = s.parse(s.FlagBody, json_body())
    flagged, created = flags.flag_comparison(user_id=acting_user().id, comparison_id=comparison_id,
                                             reason=body.reason, comment=body.comment)
    return s.FlagOut.respond(s.flag_fields(flagged)), 201 if created else 200


@bp.get("/flags")
@require("import")
def list_flags():
    """Open flags, oldest first, with who flagged and the input."""
    return s.Flags.respond(flags=[s.flag_fields(f) | {"annotator": name, "input": text}
                                  for f, name, text in flags.open_flags()])


@bp.post("/flags/<id:flag_id>/resolve")
@require("import")
def resolve_flag(flag_id: int):
    """Clear a flag (the input goes back in the queue) or remove its input from the pool."""
    body = s.parse(s.FlagResolution, json_body())
    return s.FlagOut.respond(s.flag_fields(flags.resolve_flag(flag_id=flag_id, action=body.action,
                                                              actor=acting_user().name)))


@bp.get("/annotators")
@require("import")
def annotators():
    """Per annotator: answers (today, UTC), median seconds, skip and all-bad rates, gold accuracy, agreement, flags."""
    return s.Annotators.respond(annotators=team.annotator_stats())


@bp.get("/audit")
@require("export")
def audit():
    """The audit log, newest first: ?kind=versions|annotation|arena|people|all, &limit= (1-500), &offset=."""
    query = s.parse(s.AuditQuery, request.args.to_dict(), strict=False)
    events = registry.audit_log(kind=query.kind, limit=query.limit, offset=query.offset)
    return s.audit_body(events, total=registry.audit_count(kind=query.kind), query=query)


@bp.get("/progress")
@require("annotate")
def progress():
    """Counters for the annotation page."""
    return s.Progress.respond(answers.progress(user_id=acting_user().id))


@bp.post("/arena/battles")
@require("annotate")
def create_battle():
    """A blind battle of two versions on a typed prompt (rate-limited per user), else your pending or a pool one."""
    body = s.parse(a.NewBattle, json_body())
    if body.prompt is not None:
        comparisons.refuse_if_busy()  # as for a typed comparison: refused before it is counted
        limit_typed_prompts()
    return a.battle_body(battles.create_battle(user_id=acting_user().id, input_text=body.prompt)), 201


@bp.get("/arena/battles/<id:battle_id>")
@require("annotate")
def get_battle(battle_id: int):
    """A battle: any, with each candidate's version, for operators; your own, without versions, for anyone else.

    An operator's own battle stays blind until they voted on it."""
    user = acting_user()
    if can(user, "activate"):
        battle = battles.get_battle(battle_id=battle_id)
        # Revealed when it is someone else's, or voted. Not a prefetched one nobody holds yet: it may be handed to
        # this operator next, and seeing its versions first would break their blindness.
        mine_next = battle.user_id is None or battle.user_id == user.id
        return a.battle_body(battle, reveal=not mine_next or battle.verdict is not None)
    return a.battle_body(battles.get_battle(battle_id=battle_id, user_id=user.id))


@bp.post("/arena/battles/<id:battle_id>/vote")
@require("annotate")
def vote(battle_id: int):
    """Vote for a candidate, a tie or both bad (201); the same vote again answers 200, another one 409."""
    body = s.parse(a.VoteBody, json_body())
    battle, created = battles.record_vote(user_id=acting_user().id, battle_id=battle_id, candidate_id=body.candidate_id,
                                          verdict=body.verdict, latency_ms=body.latency_ms)
    if created:
        challenger.decide_by_rule()  # CHALLENGER_DECIDE=auto: this vote may settle the challenger
    return a.battle_body(battle), 201 if created else 200


@bp.get("/arena/leaderboard")
@require("export")
def leaderboard():
    """Bradley-Terry ratings of the versions from the votes, with 95% bootstrap intervals, and per-pair records."""
    return a.Leaderboard.respond(battles.standings())


@bp.get("/arena/export")
@require("export")
def export_votes():
    """Arena votes for a winner as TRL preference pairs with both version ids, one JSON object per line."""
    return Response(stream_with_context(export_lines(arena=True)), mimetype="application/x-ndjson",
                    headers={"Content-Disposition": "attachment; filename=arena-votes.jsonl"})


@bp.get("/agreement")
@require("export")
def agreement():
    """Agreement between annotators on overlapping comparisons, and each annotator's gold accuracy."""
    return a.Agreement.respond(annotation_agreement(), gold=gold_accuracy())


@bp.get("/preferences/export")
@require("export")
def export():
    """All clicks, streamed: ?format=trl (the default), trl-chat, kto (JSON lines) or parquet, with metadata."""
    fmt = check_format(request.args.get("format", "trl"))
    filename, media = FILES[fmt]
    body = parquet_chunks() if fmt == "parquet" else export_lines(fmt=fmt)
    return Response(stream_with_context(body), mimetype=media,
                    headers={"Content-Disposition": f"attachment; filename={filename}"})


@bp.post("/prompts")
@require("import")
def import_prompts():
    """Add prompts to the pool."""
    body = s.parse(s.PromptImport, json_body())
    result = prompts.import_prompts(texts=body.prompts, source=f"api:{acting_user().name}",
                                    max_chars=current_app.config["MAX_INPUT_CHARS"])
    return s.PromptImportResult.respond(result), 201


@bp.post("/training-runs")
@require("retrain")
def create_training_run():
    """Queue one DPO run (202), or return the open one (200): single flight."""
    # The body is checked against schemas.TrainingOverrides by jobs.training_config, the one place runs are built.
    run, created = jobs.request_training(requested_by=acting_user().name, overrides=json_body())
    return s.run_body(run), 202 if created else 200


@bp.get("/training-runs")
@require("retrain")
def list_training_runs():
    """Recent runs."""
    return s.runs_body(jobs.list_runs())


@bp.get("/training-runs/<run_id>")
@require("retrain")
def get_training_run(run_id: str):
    """One run with its progress and metrics."""
    return s.run_body(jobs.get_run(run_id=run_id))


@bp.get("/model-versions")
@require("export")
def list_model_versions():
    """Every version with its lineage and whether it is active."""
    return s.versions_body(registry.list_versions(), active_id=registry.active_version_id(),
                           challenger_id=registry.challenger_version_id())


@bp.get("/model-versions/compare")
@require("export")
def compare_versions():
    """Two versions' probe samples side by side (stored by the worker); 409 while either's are being made."""
    a, b = (s.query_id(request.args.get(k), name=k) for k in ("a", "b"))
    return s.VersionComparison.respond(**probes.compare(a=a, b=b))


@bp.post("/model-versions/<id:version_id>/probes")
@require("retrain")
def request_probes(version_id: int):
    """Have the worker sample this version on the probe set in force (202; a no-op when done or under way)."""
    row = probes.request_samples(version_id=version_id, actor=acting_user().name)
    return s.ProbeState.respond(version_id=row.version_id, revision=row.revision_id, status=row.status,
                                error=row.error), 202


@bp.get("/probes")
@require("export")
def get_probes():
    """The probe set in force: its revision and inputs (revision null before the first is drawn)."""
    revision = probes.current_probes()
    return s.ProbeSet.respond(revision=revision.id if revision else None, inputs=revision.inputs if revision else [])


@bp.put("/probes")
@require("import")
def put_probes():
    """Save a new probe set (a new revision; earlier ones are kept)."""
    body = s.parse(s.ProbeInputs, json_body())
    revision = probes.save_probes(inputs=body.inputs, actor=acting_user().name)
    return s.ProbeSet.respond(revision=revision.id, inputs=revision.inputs)


@bp.post("/model-versions/<id:version_id>/promote")
@require("activate")
def promote_challenger(version_id: int):
    """Serve the challenger (200); 409 for a version that is not the challenger."""
    body = s.parse(s.Activation, json_body())
    event = registry.promote_challenger(version_id=version_id, actor=acting_user().name, reason=body.reason)
    return s.ActivationResult.respond(active=version_id, previous=event.from_version_id, reason=event.reason)


@bp.post("/model-versions/<id:version_id>/retire")
@require("activate")
def retire_challenger(version_id: int):
    """Drop the challenger role (200; the version stays ready); 409 for a version that is not the challenger."""
    body = s.parse(s.Activation, json_body())
    registry.retire_challenger(version_id=version_id, actor=acting_user().name, reason=body.reason)
    return s.Challenger.respond(standing=None)


@bp.get("/challenger")
@require("export")
def challenger_standing():
    """Where the challenger stands against the champion: votes, win rate, both ratings, the verdict."""
    return s.Challenger.respond(standing=challenger.challenger_standing())


@bp.post("/model-versions/<id:version_id>/activate")
@require("activate")
def activate_model_version(version_id: int):
    """Serve this version from now on (also how you roll back)."""
    body = s.parse(s.Activation, json_body())
    event = registry.activate_version(version_id=version_id, actor=acting_user().name, reason=body.reason)
    return s.ActivationResult.respond(active=version_id, previous=event.from_version_id, reason=event.reason)


@bp.get("/serving")
@require("export")
def serving():
    """Which version this web process serves right now, and its last load error (one answer per process)."""
    return s.Serving.respond(get_holder(current_app._get_current_object()).status(), pid=os.getpid())
