"""The OpenAPI 3.1 description of /api, generated from app.web.schemas and the app's own routes.

Why not spectree or flask-smorest: they name a path parameter after the view argument
(`/api/comparisons/{comparison_id}/answer`), while our published paths and the route-matrix tests use `{id}`;
spectree also parses a non-UTF-8 body as `{}` (which would hand out a pool prompt instead of a 400) and
answers validation errors in its own shape. Plain pydantic models plus this builder keep one source for
validation and the spec, with the error shape the API already has. OpenAPI 3.1, because its schemas are
JSON Schema 2020-12, which is what pydantic writes (`anyOf [.., null]` rather than 3.0's `nullable`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from flask import Flask
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from app.dataset.export import FORMATS
from app.web import arena_schemas as a
from app.web import schemas as s

REF = "#/components/schemas/{model}"
# The database can drop out under any route (a 503, see app.web.errors), so every operation documents it.
ALWAYS = (503,)
# Any write may fail CSRF (browser session) or the body limit, whatever its model.
WRITES = (400, 413)


@dataclass(frozen=True)
class Operation:
    """What the spec says about one view: its body, its successful answers and its other status codes."""

    responses: dict[int, type[BaseModel] | None]
    body: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()
    public: bool = False
    media: str = "application/json"
    also: tuple[str, ...] = ()  # other media types its successful answers may come as
    query: tuple[dict, ...] = ()  # query parameters, as OpenAPI parameter objects


# Endpoint -> operation. A route with no row here is missing from the spec, and tests/test_api.py fails.
OPERATIONS: dict[str, Operation] = {
    "annotate.healthz": Operation({200: s.Health}, public=True),
    "api.openapi": Operation({200: None}, errors=(401,), public=True),  # 401: a bad token is refused anyway
    "api.create_comparison": Operation({201: s.ComparisonWithProgress}, s.NewComparison, (404, 429)),
    "api.get_comparison": Operation({200: s.Comparison}, errors=(404,)),
    "api.answer": Operation({201: s.AnswerResult, 200: s.AnswerResult}, s.AnswerBody, (404, 409, 422)),
    "api.undo": Operation({200: s.ComparisonWithProgress}, errors=(404, 409)),
    "api.progress": Operation({200: s.Progress}),
    "api.export": Operation({200: None}, media="application/x-ndjson", also=("application/vnd.apache.parquet",), query=(
        {"name": "format", "in": "query", "required": False,
         "description": "trl (default), trl-chat, kto: JSON lines; parquet: one Parquet file",
         "schema": {"type": "string", "enum": list(FORMATS), "default": "trl"}},), errors=(400,)),
    "api.import_prompts": Operation({201: s.PromptImportResult}, s.PromptImport),
    "api.create_training_run": Operation({202: s.TrainingRun, 200: s.TrainingRun}, s.TrainingOverrides, (409,)),
    "api.list_training_runs": Operation({200: s.TrainingRuns}),
    "api.get_training_run": Operation({200: s.TrainingRun}, errors=(404,)),
    "api.list_model_versions": Operation({200: s.ModelVersions}),
    "api.activate_model_version": Operation({200: s.ActivationResult}, s.Activation, (404, 409)),
    "api.serving": Operation({200: s.Serving}),
    "api.promote_challenger": Operation({200: s.ActivationResult}, s.Activation, (404, 409)),
    "api.retire_challenger": Operation({200: s.Challenger}, s.Activation, (404, 409)),
    "api.challenger_standing": Operation({200: s.Challenger}),
    "api.compare_versions": Operation({200: s.VersionComparison}, errors=(400, 404, 409), query=(
        {"name": "a", "in": "query", "required": True, "schema": {"type": "integer", "minimum": 1}},
        {"name": "b", "in": "query", "required": True, "schema": {"type": "integer", "minimum": 1}})),
    "api.request_probes": Operation({202: s.ProbeState}, errors=(404, 409)),
    "api.get_probes": Operation({200: s.ProbeSet}),
    "api.put_probes": Operation({200: s.ProbeSet}, s.ProbeInputs, (413,)),
    "api.create_battle": Operation({201: a.Battle}, a.NewBattle, (404, 409, 429)),
    "api.get_battle": Operation({200: a.Battle}, errors=(404,)),
    "api.vote": Operation({201: a.Battle, 200: a.Battle}, a.VoteBody, (404, 409, 422)),
    "api.leaderboard": Operation({200: a.Leaderboard}),
    "api.export_votes": Operation({200: None}, media="application/x-ndjson"),
    "api.agreement": Operation({200: a.Agreement}),
    "api.create_user": Operation({201: s.UserCreated}, s.NewUser, (409,)),
    "api.change_user": Operation({200: s.UserState}, s.UserChange, (404,)),
    "api.rotate_user_token": Operation({200: s.NewToken}, errors=(404,)),
    "api.flag": Operation({201: s.FlagOut, 200: s.FlagOut}, s.FlagBody, (404,)),
    "api.list_flags": Operation({200: s.Flags}),
    "api.resolve_flag": Operation({200: s.FlagOut}, s.FlagResolution, (404, 409)),
    "api.change_answer": Operation({200: s.ChangedAnswer}, s.AnswerBody, (404, 409, 422)),
    "api.my_answers": Operation({200: s.MyAnswers}, errors=(400,), query=(
        {"name": "q", "in": "query", "required": False, "schema": {"type": "string", "maxLength": 200}},
        {"name": "limit", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}},
        {"name": "offset", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 0, "maximum": 10**9, "default": 0}})),
    "api.annotators": Operation({200: s.Annotators}),
    "api.audit": Operation({200: s.AuditLog}, errors=(400,), query=(
        {"name": "kind", "in": "query", "required": False,
         "schema": {"type": "string", "enum": ["versions", "annotation", "arena", "people", "all"], "default": "all"}},
        {"name": "limit", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100}},
        {"name": "offset", "in": "query", "required": False,
         "schema": {"type": "integer", "minimum": 0, "maximum": 10**9, "default": 0}})),
    "api.get_task": Operation({200: s.Task}),
    "api.put_task": Operation({200: s.Task}, s.TaskText, (413,)),
}
DESCRIPTIONS = {200: "ok", 201: "created", 202: "queued", 400: "bad input", 401: "no or unknown bearer token",
                403: "the role does not allow this", 404: "not found", 409: "conflicts with the current state",
                413: "too large", 422: "names something that does not belong", 429: "too many: see Retry-After",
                503: "a service is unavailable, or the model is busy: see Retry-After"}


@cache
def components() -> dict:
    """Every model's JSON schema, with $refs into #/components/schemas."""
    models = {m for op in OPERATIONS.values() for m in (op.body, *op.responses.values()) if m} | {s.Error}
    modes = [(m, "validation" if issubclass(m, s.Body) else "serialization") for m in models]
    _, top = models_json_schema(sorted(modes, key=lambda x: x[0].__name__), ref_template=REF)
    return top["$defs"]


def path_template(rule: str) -> str:
    """/api/comparisons/<id:comparison_id>/answer -> /api/comparisons/{id}/answer (every id param is `id`)."""
    return re.sub(r"<(?:\w+:)?\w+>", "{id}", rule)


def _content(model: type[BaseModel] | None, media: str) -> dict:
    if model is not None:
        return {media: {"schema": {"$ref": REF.format(model=model.__name__)}}}
    return {media: {"schema": {"type": "object" if media == "application/json" else "string"}}}


def _operation(view, op: Operation, converter: str | None, method: str) -> dict:
    out: dict = {"summary": (view.__doc__ or "").strip().split("\n")[0]}
    if converter:
        schema = {"type": "integer", "minimum": 1, "maximum": 2**31 - 1} if converter == "id" else {"type": "string"}
        out["parameters"] = [{"name": "id", "in": "path", "required": True, "schema": schema}]
    if op.query:
        out["parameters"] = [*out.get("parameters", []), *op.query]
    if op.body:
        out["requestBody"] = {"required": True, "content": _content(op.body, "application/json")}
    if op.public:
        out["security"] = []
    errors = set(op.errors) | set(ALWAYS) | (set(WRITES) if method in ("post", "put", "patch") else set())
    errors |= set() if op.public else {401, 403}
    answers = {**op.responses, **dict.fromkeys(errors, s.Error)}
    out["responses"] = {
        str(status): {"description": DESCRIPTIONS[status],
                      "content": {k: v for media in ((op.media, *op.also) if status < 400 else ("application/json",))
                                  for k, v in _content(model, media).items()}}
        for status, model in sorted(answers.items())}
    return out


def openapi_spec(app: Flask) -> dict:
    """Build the spec from the app's routes and OPERATIONS."""
    paths: dict[str, dict] = {}
    for rule in app.url_map.iter_rules():
        op = OPERATIONS.get(rule.endpoint)
        if op is None:
            continue
        found = re.findall(r"<(?:(\w+):)?\w+>", rule.rule)  # the converter of the (single) path variable
        converter = (found[0] or "string") if found else None
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            entry = paths.setdefault(path_template(rule.rule), {})
            entry[method.lower()] = _operation(app.view_functions[rule.endpoint], op, converter, method.lower())
    return {
        "openapi": "3.1.0",
        "info": {"title": "prefloop API", "version": "1.0.0",
                 "description": "Bearer tokens come from `flask users create`. Errors are {error, status}."},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}, "schemas": components()},
        "security": [{"bearer": []}],
        "paths": dict(sorted(paths.items())),
    }

