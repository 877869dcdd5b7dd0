"""The JSON API's shapes as pydantic models: request validation and /api/openapi.json both read them.

Requests are parsed with `parse`, which turns a ValidationError into one clear BadInput (a 400 with the API's
error shape), never pydantic's 422. Responses forbid extra fields so the spec says exactly what is sent, and every
body is built through its model (`Out.respond`; the *_body functions build them from rows), so a body and the spec
cannot drift apart.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from annotated_types import Ge, Le
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from app.platform.exceptions import BadInput
from app.tables import FLAG_REASONS, FLAG_STATUSES, ROLES, RUN_STATUSES, VERDICTS, VERSION_STATUSES
from app.tables import Comparison as ComparisonRow
from app.tables import ModelVersion as ModelVersionRow
from app.tables import Preference as PreferenceRow
from app.tables import TrainingRun as TrainingRunRow
from app.training.spec import TrainingSpec
from app.versions.registry import version_role

# An answer body names a verdict only when no candidate is chosen: "choice" is implied by candidate_id.
ANSWER_VERDICTS: tuple[str, ...] = tuple(v for v in VERDICTS if v != "choice")
M = TypeVar("M", bound=BaseModel)
# The largest value an INTEGER column holds on Postgres (2**63 raised OverflowError, a 500); 24 days in ms.
MAX_LATENCY_MS = 2**31 - 1
# also_good is checked against the comparison's own candidates; this only bounds the work on an absurd body.
MAX_ALSO_GOOD = 16


class Body(BaseModel):
    """A request body: JSON types as they are (a bool is not a number, "1" is not an int)."""

    model_config = ConfigDict(strict=True)

    @model_validator(mode="before")
    @classmethod
    def no_lone_surrogates(cls, data: Any) -> Any:
        # JSON can spell "\ud800", which is no character: no column, tokenizer or log takes it as UTF-8 (a 500).
        if has_lone_surrogate(data):
            raise ValueError("the body contains an unpaired surrogate (\\ud800-\\udfff), which is not text")
        return data


def has_lone_surrogate(value: Any) -> bool:
    """Whether any string in a parsed JSON value holds a lone surrogate. Iterative: a value nested 900 lists deep
    overflowed the recursive version (a 500)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii() and any("\ud800" <= c <= "\udfff" for c in item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


class Out(BaseModel):
    """A response: every field is sent, and nothing else. Every body the API sends is built by `respond`."""

    model_config = ConfigDict(extra="forbid")

    @classmethod
    def respond(cls, data: dict | None = None, /, **fields: Any) -> dict:
        """The body: the fields checked against this model, then as JSON (a field never given is left out)."""
        return cls.model_validate({**(data or {}), **fields}).model_dump(mode="json", exclude_unset=True)


# Requests ---------------------------------------------------------------------------------------------------


class TaskText(Body):
    """A new revision of the task: the question above the candidates, the guidelines (Markdown), a system prompt."""

    model_config = ConfigDict(extra="forbid")
    question: str = Field(description="shown above the candidates; up to 300 characters")
    guidelines: str = Field(description="Markdown (raw HTML is shown as text); up to 20000 characters")
    system_prompt: str | None = Field(None, description="a chat model's system prompt; absent or empty: none")


class NewUser(Body):
    """An account to create; its password and token are made here and shown once."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="1 to 64 characters, no slash")
    role: Literal[ROLES]


class UserChange(Body):
    """A new role, or disabled true/false; what is left out stays."""

    model_config = ConfigDict(extra="forbid")
    role: Literal[ROLES] | None = None
    disabled: bool | None = None


class FlagBody(Body):
    """Why this comparison cannot be judged fairly, with an optional note."""

    model_config = ConfigDict(extra="forbid")
    reason: Literal[FLAG_REASONS]
    comment: str | None = Field(None, description="up to 500 characters")


class FlagResolution(Body):
    """clear: the input goes back in the queue; remove_input: it leaves the pool."""

    model_config = ConfigDict(extra="forbid")
    action: Literal["clear", "remove_input"]


class MyAnswersQuery(BaseModel):
    """GET /api/my/answers's query: a search word in the input, and a page."""

    model_config = ConfigDict(extra="ignore")
    q: str = Field("", max_length=200)
    limit: int = Field(20, ge=1, le=100)
    offset: int = Field(0, ge=0, le=10**9)

    @field_validator("q")
    @classmethod
    def no_nul(cls, value: str) -> str:
        # PostgreSQL text cannot hold NUL: a search for one would be a 500, not "no match".
        if "\x00" in value:
            raise ValueError("q contains a NUL character")
        return value.strip()


class AuditQuery(BaseModel):
    """GET /api/audit's query: a kind of event, and a page."""

    model_config = ConfigDict(extra="ignore")
    kind: Literal["versions", "annotation", "arena", "people", "all"] = "all"
    limit: int = Field(100, ge=1, le=500)
    offset: int = Field(0, ge=0, le=10**9)


class NewComparison(Body):
    """A typed prompt to sample candidates for; without one, the next pool prompt."""

    model_config = ConfigDict(extra="forbid")
    prompt: str | None = Field(None, description="up to MAX_INPUT_CHARS characters; null or absent: from the pool")


class AnswerBody(Body):
    """Exactly one of candidate_id (the best candidate) or verdict."""

    model_config = ConfigDict(json_schema_extra={"oneOf": [{"required": ["candidate_id"]}, {"required": ["verdict"]}]})
    candidate_id: int | None = None
    verdict: Literal[ANSWER_VERDICTS] | None = None
    also_good: list[int] = Field(default_factory=list, max_length=MAX_ALSO_GOOD,
                                 description="with candidate_id: other candidates that are acceptable too "
                                             "(they are not trained as worse than it)")
    latency_ms: int | None = Field(None, ge=0, le=MAX_LATENCY_MS,
                                   description="time to answer; an unusable value is dropped")

    @field_validator("latency_ms", mode="before")
    @classmethod
    def drop_bad_latency(cls, value: Any) -> Any:
        # A browser timing glitch must not cost the click: anything but an int the column holds is dropped.
        return value if type(value) is int and 0 <= value <= MAX_LATENCY_MS else None

    @model_validator(mode="after")
    def exactly_one(self) -> AnswerBody:
        if (self.candidate_id is None) == (self.verdict is None):
            raise ValueError("give exactly one of candidate_id or verdict")
        if self.also_good and self.candidate_id is None:
            raise ValueError("also_good goes with candidate_id: mark other good candidates beside the best one")
        if len(set(self.also_good)) != len(self.also_good) or self.candidate_id in self.also_good:
            raise ValueError("also_good lists other candidates than candidate_id, each once")
        return self


class PromptImport(Body):
    # Bounded: 150,000 prompts in one 1.6 MB request held a worker for 10.7 s. Files go through the admin page.
    prompts: list[str] = Field(min_length=1, max_length=10_000,
                               description="1 to 10,000, each up to MAX_INPUT_CHARS characters, not blank")


class Activation(Body):
    reason: str = Field(min_length=1, description="kept in the audit log; blank is refused")


class ChallengerRating(Out):
    version_id: int
    role: Literal["champion", "challenger"]
    rating: float
    ci_low: float
    ci_high: float


class ChallengerStanding(Out):
    """The challenger against the champion, from their battles only."""

    champion: int
    challenger: int
    votes: int
    wins: int = 0
    losses: int = 0
    ties: int = 0
    both_bad: int = 0
    win_rate: float | None = Field(description="the challenger's; a tie or both-bad counts half; null before a vote")
    verdict: Literal["ahead", "behind", "undecided"] = Field(
        description="ahead: its 95% interval is wholly above the champion's; behind: wholly below")
    min_votes: int = Field(description="CHALLENGER_MIN_VOTES: the rule decides only after this many")
    decide: Literal["manual", "auto"]
    ratings: list[ChallengerRating]


class Challenger(Out):
    standing: ChallengerStanding | None = Field(description="null when there is no challenger")


class ProbeInputs(Body):
    inputs: list[str] = Field(min_length=1, max_length=1000,
                              description="the probe inputs, in order (each checked as a typed prompt; at most 100 "
                                          "after duplicates are dropped)")


class ProbeSet(Out):
    revision: int | None = Field(description="the probe set in force; null before the first is drawn")
    inputs: list[str]


class ProbeState(Out):
    version_id: int
    revision: int
    status: Literal["queued", "running", "ready", "failed"]
    error: str


class ProbePair(Out):
    input: str
    a: list[str] = Field(description="version a's samples on this input (3, the served settings, a fixed seed)")
    b: list[str]


class VersionComparison(Out):
    revision: int = Field(description="the probe set both were sampled on")
    a: int
    b: int
    probes: list[ProbePair]


def query_id(value: str | None, *, name: str) -> int:
    """A positive integer id from the query string, or a clear 400."""
    if value is None or not value.isdecimal() or len(value) > 10 or not 1 <= int(value) <= 2**31 - 1:
        raise BadInput(f"{name} must be a version id (a positive integer)")
    return int(value)


class TrainingOverrides(Body):
    """Per-run overrides of the training settings: the one table behind the API, the spec and the admin form."""

    model_config = ConfigDict(extra="forbid")
    beta: float | None = Field(None, ge=1e-4, le=10.0, description="DPO beta")
    epochs: int | None = Field(None, ge=1, le=50)
    learning_rate: float | None = Field(None, ge=1e-7, le=1e-1)
    lora: bool | None = None

    @field_validator("epochs", mode="before")
    @classmethod
    def whole_float(cls, value: Any) -> Any:
        # JSON has one number type: 3.0 is a whole number of epochs (1.5 still fails as not an int).
        return int(value) if type(value) is float and value.is_integer() else value

    def config_values(self) -> dict:
        """The overrides given, under their training-config keys (learning_rate is `lr` there)."""
        return {"lr" if k == "learning_rate" else k: v for k, v in self.model_dump(exclude_none=True).items()}


def override_bounds() -> dict[str, dict]:
    """{field: {"min", "max", "step"}} of the numeric overrides, read from TrainingOverrides' JSON schema."""
    out = {}
    for name, prop in TrainingOverrides.model_json_schema()["properties"].items():
        number = next((s for s in prop.get("anyOf", [prop]) if s.get("type") in ("number", "integer")), None)
        if number:
            out[name] = {"min": number["minimum"], "max": number["maximum"],
                         "step": 1 if number["type"] == "integer" else "any"}
    return out


# Responses --------------------------------------------------------------------------------------------------


class Error(Out):
    error: str
    status: int


class Health(Out):
    status: Literal["ok"]


class Progress(Out):
    mine: int
    total: int
    pool: int
    pool_answered: int
    remaining: int = Field(description="pool prompts still needing answers (fewer than ANNOTATION_OVERLAP)")


class Candidate(Out):
    id: int
    text: str


class Comparison(Out):
    """The annotator's view: no model version, candidates in display order."""

    id: int
    prompt: str
    candidates: list[Candidate]
    task_revision: int | None = Field(description="the task text it is shown under (GET /api/task)")


class UserCreated(Out):
    """The new account, with its password and bearer token: shown this once, stored only as hashes."""

    name: str
    role: str
    password: str
    token: str


class UserState(Out):
    name: str
    role: str
    disabled: bool


class NewToken(Out):
    token: str


class FlagOut(Out):
    id: int
    comparison_id: int
    reason: str
    comment: str
    status: Literal[FLAG_STATUSES]
    created_at: str


class OpenFlag(FlagOut):
    annotator: str
    input: str


class Flags(Out):
    flags: list[OpenFlag]


class AnnotatorStats(Out):
    name: str
    answers: int
    answers_today: int
    median_seconds: float | None
    skip_rate: float | None
    all_bad_rate: float | None
    gold_accuracy: float | None
    agreement: float | None
    flags: int


class Annotators(Out):
    annotators: list[AnnotatorStats]


class AuditEventOut(Out):
    id: int
    actor: str
    action: str
    from_version_id: int | None
    to_version_id: int | None
    reason: str
    detail: dict[str, Any]
    created_at: str


class AuditLog(Out):
    events: list[AuditEventOut]
    total: int
    kind: str
    limit: int
    offset: int


class Task(Out):
    """One revision of the task text; the newest is in force."""

    revision: int
    question: str
    guidelines: str
    system_prompt: str
    created_at: str
    author: str
    restored_from: int | None


class ComparisonWithProgress(Comparison):
    progress: Progress


class AnswerResult(Out):
    id: int
    comparison_id: int
    verdict: Literal[VERDICTS]
    candidate_id: int | None
    also_good: list[int]
    progress: Progress


class ChangedAnswer(AnswerResult):
    mode: Literal["replaced", "superseded", "unchanged"] = Field(
        description="replaced in place; superseded: a run had already read the old one, so this is a new answer "
                    "for the next run; unchanged: it was already this answer")


class MyAnswer(Out):
    comparison_id: int
    prompt: str
    candidates: list[Candidate]
    verdict: Literal[VERDICTS]
    candidate_id: int | None
    also_good: list[int]
    answered_at: str
    task_revision: int | None


class MyAnswers(Out):
    answers: list[MyAnswer]
    total: int
    limit: int
    offset: int


class PromptImportResult(Out):
    imported: int
    duplicates: int


class TrainingRun(Out):
    """A run as run_body builds it."""

    id: str
    status: Literal[RUN_STATUSES]
    requested_by: str
    # A run queued by an older release may lack a setting added since: it is still shown, as it was stored.
    config: TrainingSpec | dict[str, Any] = Field(
        description="the run's settings, fixed when it was queued (app/training/spec.py)")
    snapshot: dict[str, Any] = Field(description="clicks, pairs and the data's sha256 `hash`")
    parent_version_id: int | None
    version_id: int | None
    progress: dict[str, Any]
    metrics: dict[str, Any]
    error: str = Field(description="empty unless the run failed")
    created_at: str
    started_at: str | None
    finished_at: str | None


class TrainingRuns(Out):
    runs: list[TrainingRun]


class ModelVersion(Out):
    """A version as versions_body builds it."""

    id: int
    parent_id: int | None
    status: Literal[VERSION_STATUSES]
    active: bool
    role: Literal["champion", "challenger"] | None = Field(
        description="champion: the active version; challenger: passed the gate and waits for the arena "
                    "(PROMOTION=challenger); null otherwise")
    arch: str
    base_model: str
    prompt_format: Literal["chat", "template", "auto"] = Field(
        description="chat: the tokenizer's chat template with the task's system prompt; template: the manifest's "
                    "{input} template; auto: a version from before this was recorded (chat if it has a template)")
    run_id: str | None
    metrics: dict[str, Any]
    pairs: int | None
    created_at: str
    activated_at: str | None


class ModelVersions(Out):
    versions: list[ModelVersion]


class ActivationResult(Out):
    active: int
    previous: int | None
    reason: str


class Serving(Out):
    """One web process: the version it serves, the one it should, and its last load error."""

    pid: int
    serving: int | None
    wanted: int | None
    error: str | None
    resident: list[int] = Field(description="versions besides the served one loaded for the arena, oldest use first")


# Bodies from rows: every response body the API and the pages send is built here, through its model --------


def iso(moment) -> str | None:
    """A naive UTC datetime as ISO 8601 with a Z; None stays None."""
    return moment.isoformat() + "Z" if moment else None


def comparison_body(row: ComparisonRow, *, progress: dict | None = None) -> dict:
    """The annotator's view: no model version, candidates in display order (with progress, after a click)."""
    fields = {"id": row.id, "prompt": row.input_text, "task_revision": row.task_revision_id,
              "candidates": [{"id": c.id, "text": c.text} for c in row.candidates]}
    if progress is None:
        return Comparison.respond(fields)
    return ComparisonWithProgress.respond(fields, progress=progress)


def flag_fields(flag) -> dict:
    """A flag as FlagOut names its fields."""
    return {"id": flag.id, "comparison_id": flag.comparison_id, "reason": flag.reason, "comment": flag.comment,
            "status": flag.status, "created_at": iso(flag.created_at)}


def my_answer_fields(row: ComparisonRow) -> dict:
    """One of your answered comparisons, as MyAnswer names its fields."""
    pref = row.preference
    return {"comparison_id": row.id, "prompt": row.input_text, "task_revision": row.task_revision_id,
            "candidates": [{"id": c.id, "text": c.text} for c in row.candidates], "verdict": pref.verdict,
            "candidate_id": pref.chosen_candidate_id, "also_good": pref.also_good or [],
            "answered_at": iso(pref.created_at)}


def audit_body(events: list, *, total: int, query: AuditQuery) -> dict:
    """A page of the audit log."""
    return AuditLog.respond(events=[{
        "id": e.id, "actor": e.actor, "action": e.action, "from_version_id": e.from_version_id,
        "to_version_id": e.to_version_id, "reason": e.reason, "detail": e.detail or {},
        "created_at": iso(e.created_at)} for e in events],
        total=total, kind=query.kind, limit=query.limit, offset=query.offset)


def answer_body(pref: PreferenceRow, *, progress: dict) -> dict:
    """A stored answer, with the annotator's progress."""
    return AnswerResult.respond(id=pref.id, comparison_id=pref.comparison_id, verdict=pref.verdict,
                                  candidate_id=pref.chosen_candidate_id, also_good=pref.also_good or [],
                                  progress=progress)


def run_fields(run: TrainingRunRow) -> dict:
    """A run's fields as the TrainingRun model names them."""
    return {
        "id": run.id, "status": run.status, "requested_by": run.requested_by, "config": run.config,
        "snapshot": run.snapshot | {"hash": run.snapshot_hash},
        "parent_version_id": run.parent_version_id, "version_id": run.version_id,
        "progress": run.progress, "metrics": run.metrics, "error": run.error,
        "created_at": iso(run.created_at), "started_at": iso(run.started_at), "finished_at": iso(run.finished_at),
    }


def run_body(run: TrainingRunRow) -> dict:
    """A run with its settings, data snapshot, progress and metrics."""
    return TrainingRun.respond(run_fields(run))


def runs_body(runs: list[TrainingRunRow]) -> dict:
    """Runs, as listed."""
    return TrainingRuns.respond(runs=[run_fields(r) for r in runs])


def version_prompt_format(version: ModelVersionRow) -> str:
    """How the version turns inputs into prompts, as its manifest records it."""
    return (version.manifest or {}).get("prompt_format") or "auto"


def version_fields(version: ModelVersionRow, *, active_id: int | None, challenger_id: int | None = None) -> dict:
    """A version's fields as the ModelVersion model names them."""
    return {
        "id": version.id, "parent_id": version.parent_id, "status": version.status, "active": version.id == active_id,
        "role": version_role(version.id, active_id=active_id, challenger_id=challenger_id),
        "arch": version.arch, "base_model": version.base_model, "prompt_format": version_prompt_format(version),
        "run_id": version.run_id, "metrics": version.metrics,
        "pairs": version.manifest.get("pair_count"), "created_at": iso(version.created_at),
        "activated_at": iso(version.activated_at),
    }


def versions_body(versions: list[ModelVersionRow], *, active_id: int | None, challenger_id: int | None) -> dict:
    """Every version with its lineage, whether it is active, and its role."""
    return ModelVersions.respond(versions=[version_fields(v, active_id=active_id, challenger_id=challenger_id)
                                           for v in versions])


# Parsing ----------------------------------------------------------------------------------------------------


def parse(model: type[M], data: Any, *, strict: bool | None = None) -> M:
    """Validate data into model, or raise one clear BadInput (400). strict=False parses form strings."""
    try:
        return model.model_validate(data, strict=strict)
    except ValidationError as exc:
        raise BadInput(describe(model, exc)) from None


def describe(model: type[BaseModel], exc: ValidationError) -> str:
    """One sentence for the first problem; unknown fields are listed together with the allowed ones."""
    errors = exc.errors(include_url=False)
    unknown = [str(e["loc"][-1]) for e in errors if e["type"] == "extra_forbidden"]
    if unknown:
        return f"unknown fields: {', '.join(sorted(unknown))}; allowed: {', '.join(model.model_fields)}"
    error = errors[0]
    kind, loc = error["type"], error["loc"]
    name = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
    if not loc and kind in ("model_type", "dict_type", "model_attributes_type"):
        return "the body must be a JSON object"
    if kind == "value_error":
        return str(error["ctx"]["error"])
    if kind in ("greater_than_equal", "less_than_equal") and len(loc) == 1:
        low, high = _bounds(model, str(loc[0]))
        return f"{name} must be between {low} and {high}"
    messages = {
        "missing": "is required", "string_type": "must be a string", "list_type": "must be a list",
        "float_type": "must be a number", "float_parsing": "must be a number",
        "int_type": "must be a number (an integer)", "int_parsing": "must be a number (an integer)",
        "int_from_float": "must be a number (an integer)",
        "bool_type": "must be true or false", "bool_parsing": "must be true or false",
        "too_short": "must not be empty",
        "literal_error": f"must be one of {error.get('ctx', {}).get('expected')}",
    }
    return f"{name} {messages[kind]}" if kind in messages else f"{name}: {error['msg']}"


def _bounds(model: type[BaseModel], field: str) -> tuple[Any, Any]:
    metadata = model.model_fields[field].metadata
    low = next((m.ge for m in metadata if isinstance(m, Ge)), None)
    high = next((m.le for m in metadata if isinstance(m, Le)), None)
    return low, high
