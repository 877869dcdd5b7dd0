"""ORM tables (named so they are not confused with the models/ checkpoint store)."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime

from flask_login import UserMixin
from sqlalchemy import JSON, CheckConstraint, ForeignKey, String, Text, UniqueConstraint, false, select
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.platform.extensions import db

# What each role may do ("task": edit the question, guidelines and system prompt; "users": manage accounts, an
# operator's only by an operator, see accounts.users.check_may_manage); admins and operators also
# annotate. The one table read by the schema's CHECK, the CLI, the views (accounts.users.can, require) and the
# templates. Order is the CLI's and the error messages'.
PERMISSIONS: dict[str, frozenset[str]] = {
    "annotator": frozenset({"annotate"}),
    "admin": frozenset({"annotate", "import", "export", "retrain", "task", "users"}),
    "operator": frozenset({"annotate", "import", "export", "retrain", "task", "users", "activate"}),
}
ROLES: tuple[str, ...] = tuple(PERMISSIONS)
VERDICTS = ("choice", "tie", "all_bad", "skip")
# An arena vote: a candidate won ("choice"), or neither did. FastChat keeps ties and both-bad votes too.
ARENA_VERDICTS = ("choice", "tie", "both_bad")
# A gold item's expected answer: the index of the best candidate in its file, or a verdict.
GOLD_VERDICTS = ("tie", "all_bad")
# A run is open while queued or running; the worker ends it succeeded (its version passed the gate),
# rejected (trained, but the gate kept it) or failed.
RUN_OPEN = ("queued", "running")
RUN_STATUSES = (*RUN_OPEN, "succeeded", "rejected", "failed")
# Why an annotator flags a comparison; an admin then clears the flag or removes the input from the pool.
FLAG_REASONS = ("unclear", "offensive", "broken", "other")
FLAG_STATUSES = ("open", "cleared", "removed")
# Only a ready version can be activated; a rejected one is kept for its metrics.
VERSION_STATUSES = ("ready", "rejected")


def one_of(column: str, values: tuple[str, ...]) -> str:
    """The SQL of a CHECK that `column` holds one of `values`, so the tuple above is the only list."""
    quoted = ",".join(f"'{v}'" for v in values)
    return f"{column} in ({quoted})"


def utcnow() -> datetime:
    """Now in UTC, naive, so SQLite and PostgreSQL store the same thing."""
    return datetime.now(UTC).replace(tzinfo=None)


class User(UserMixin, db.Model):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(256))
    # sha256 of the bearer token: a leaked database does not leak usable tokens.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    # In every session and remember cookie (get_id): raising it ends them all, at logout and when disabled.
    session_version: Mapped[int] = mapped_column(default=1, server_default="1")
    disabled: Mapped[bool] = mapped_column(default=False, server_default=false())
    # The annotator id exports carry: random, so it says nothing about the name and stays stable forever.
    pseudonym: Mapped[str] = mapped_column(String(32), unique=True, default=lambda: "a-" + secrets.token_hex(6))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    __table_args__ = (CheckConstraint(one_of("role", ROLES), name="ck_users_role"),)

    def get_id(self) -> str:
        """The id Flask-Login keeps in the session and the remember cookie: the user, their session version, and
        when it was issued (Unix seconds), so the server ends it after REMEMBER_COOKIE_DURATION whatever the
        browser keeps."""
        return f"{self.id}:{self.session_version}:{int(time.time())}"

    @property
    def is_active(self) -> bool:
        """Flask-Login refuses to log in a disabled user."""
        return not self.disabled


class Prompt(db.Model):
    __tablename__ = "prompts"
    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    # sha256 of the text, so re-importing a file does not duplicate the pool.
    text_hash: Mapped[str] = mapped_column(String(64), unique=True)
    source: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Taken out of the pool by an admin (a flag's "remove input"): kept, as comparisons name it, but never handed out.
    removed_at: Mapped[datetime | None] = mapped_column()


class Flag(db.Model):
    """An annotator's report that a comparison cannot be judged fairly; its pool input waits while the flag is open."""

    __tablename__ = "flags"
    id: Mapped[int] = mapped_column(primary_key=True)
    comparison_id: Mapped[int] = mapped_column(ForeignKey("comparisons.id"), index=True)
    prompt_id: Mapped[int | None] = mapped_column(ForeignKey("prompts.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    reason: Mapped[str] = mapped_column(String(16))
    comment: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="open", index=True)
    resolved_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column()
    __table_args__ = (
        UniqueConstraint("comparison_id", "user_id", name="uq_flags_comparison_user"),
        CheckConstraint(one_of("reason", FLAG_REASONS), name="ck_flags_reason"),
        CheckConstraint(one_of("status", FLAG_STATUSES), name="ck_flags_status"),
    )


class ModelVersion(db.Model):
    __tablename__ = "model_versions"
    id: Mapped[int] = mapped_column(primary_key=True)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    path: Mapped[str] = mapped_column(String(512))
    arch: Mapped[str] = mapped_column(String(16))  # causal | seq2seq
    base_model: Mapped[str] = mapped_column(String(512))
    status: Mapped[str] = mapped_column(String(16), default="ready")
    run_id: Mapped[str | None] = mapped_column(String(64))
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    manifest: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column()
    __table_args__ = (CheckConstraint(one_of("status", VERSION_STATUSES), name="ck_model_versions_status"),)


class ServingState(db.Model):
    """The single active-version pointer: exactly one row, id=1."""

    __tablename__ = "serving_state"
    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    # With PROMOTION=challenger: the version that passed the gate and waits for the arena's verdict (one at a time).
    challenger_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))

    @classmethod
    def active_id(cls) -> int | None:
        """The version the pointer names, read from the database (never the session's cache); None before any."""
        return db.session.scalar(select(cls.version_id).where(cls.id == 1))

    @classmethod
    def challenger_id(cls) -> int | None:
        """The challenger, read from the database; None when there is none."""
        return db.session.scalar(select(cls.challenger_version_id).where(cls.id == 1))


class AuditEvent(db.Model):
    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(primary_key=True)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    from_version_id: Mapped[int | None] = mapped_column()
    to_version_id: Mapped[int | None] = mapped_column()
    reason: Mapped[str] = mapped_column(Text, default="")
    detail: Mapped[dict] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TaskRevision(db.Model):
    """One saved version of the task text: what annotators are asked, their guidelines, a chat model's system prompt.

    Never edited: a save (or a restore) adds a row, and the newest row is the task in force."""

    __tablename__ = "task_revisions"
    id: Mapped[int] = mapped_column(primary_key=True)  # the revision number
    question: Mapped[str] = mapped_column(Text)
    guidelines: Mapped[str] = mapped_column(Text)  # Markdown
    system_prompt: Mapped[str] = mapped_column(Text, default="")
    author: Mapped[str] = mapped_column(String(64))
    restored_from: Mapped[int | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Comparison(db.Model):
    __tablename__ = "comparisons"
    id: Mapped[int] = mapped_column(primary_key=True)
    prompt_id: Mapped[int | None] = mapped_column(ForeignKey("prompts.id"), index=True)
    input_text: Mapped[str] = mapped_column(Text)
    # The exact text fed to the model (input plus the version's prompt template).
    model_prompt: Mapped[str] = mapped_column(Text)
    # None only for a gold item's comparison: its candidates come from the gold file, not from a model.
    model_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"), index=True)
    settings: Mapped[dict] = mapped_column(JSON, default=dict)
    seed: Mapped[int] = mapped_column()
    # Overlap: a copy of another annotator's comparison (same candidates, its own order) names the original here;
    # unique with user_id, so nobody answers one comparison twice. The original counts its copies.
    root_id: Mapped[int | None] = mapped_column(ForeignKey("comparisons.id"), index=True)
    copies: Mapped[int] = mapped_column(default=0, server_default="0")
    gold_item_id: Mapped[int | None] = mapped_column(ForeignKey("gold_items.id"), index=True)
    # The task text it was shown under (None only for comparisons made before task revisions existed).
    task_revision_id: Mapped[int | None] = mapped_column(ForeignKey("task_revisions.id"))
    # ready (prefetched, unclaimed) | assigned | stale (its version stopped serving before it was claimed)
    state: Mapped[str] = mapped_column(String(16), default="assigned", index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    assigned_at: Mapped[datetime | None] = mapped_column()
    # When it was last handed to its annotator (a reload hands it again): what an answer's latency counts from.
    shown_at: Mapped[datetime | None] = mapped_column()
    candidates: Mapped[list[Candidate]] = relationship(
        back_populates="comparison", order_by="Candidate.position", cascade="all, delete-orphan"
    )
    preference: Mapped[Preference | None] = relationship(back_populates="comparison", uselist=False)
    __table_args__ = (
        UniqueConstraint("root_id", "user_id", name="uq_comparisons_root_user"),
        UniqueConstraint("gold_item_id", "user_id", name="uq_comparisons_gold_user"),
    )


class Candidate(db.Model):
    __tablename__ = "candidates"
    id: Mapped[int] = mapped_column(primary_key=True)
    comparison_id: Mapped[int] = mapped_column(ForeignKey("comparisons.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column()  # order shown to the annotator (0-based)
    sample_index: Mapped[int] = mapped_column()  # order the sampler returned it
    text: Mapped[str] = mapped_column(Text)
    comparison: Mapped[Comparison] = relationship(back_populates="candidates")
    __table_args__ = (UniqueConstraint("comparison_id", "position", name="uq_candidates_position"),)


class Preference(db.Model):
    __tablename__ = "preferences"
    id: Mapped[int] = mapped_column(primary_key=True)
    # Unique: one answer per comparison, so a double click or a retry stores one row.
    comparison_id: Mapped[int] = mapped_column(ForeignKey("comparisons.id"), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    verdict: Mapped[str] = mapped_column(String(16))
    chosen_candidate_id: Mapped[int | None] = mapped_column(ForeignKey("candidates.id"))
    # With a choice: the other candidates the annotator marked acceptable too (ids, sorted), so training never
    # pushes them down below the chosen one; None when none were marked (and for every answer before the column).
    also_good: Mapped[list | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    latency_ms: Mapped[int | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    comparison: Mapped[Comparison] = relationship(back_populates="preference")
    __table_args__ = (
        CheckConstraint(one_of("verdict", VERDICTS), name="ck_preferences_verdict"),
        CheckConstraint(
            "(verdict = 'choice') = (chosen_candidate_id IS NOT NULL)", name="ck_preferences_choice_has_candidate"
        ),
    )


class AnswerChange(db.Model):
    """An answer as it was before its annotator changed it: replaced in place while no run had snapshotted it,
    else superseded (the old row gone, a new one with a new id, so the next run reads the new answer)."""

    __tablename__ = "answer_changes"
    id: Mapped[int] = mapped_column(primary_key=True)
    comparison_id: Mapped[int] = mapped_column(ForeignKey("comparisons.id"), index=True)
    preference_id: Mapped[int] = mapped_column()  # the old row's id (gone when superseded)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    verdict: Mapped[str] = mapped_column(String(16))
    chosen_candidate_id: Mapped[int | None] = mapped_column()
    also_good: Mapped[list | None] = mapped_column(JSON(none_as_null=True), nullable=True)
    latency_ms: Mapped[int | None] = mapped_column()
    answered_at: Mapped[datetime] = mapped_column()
    mode: Mapped[str] = mapped_column(String(16))  # replaced | superseded
    changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    __table_args__ = (CheckConstraint("mode in ('replaced','superseded')", name="ck_answer_changes_mode"),)


class TrainingRun(db.Model):
    __tablename__ = "training_runs"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # the RQ job id
    requested_by: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    config: Mapped[dict] = mapped_column(JSON, default=dict)
    snapshot: Mapped[dict] = mapped_column(JSON, default=dict)  # preference ids, counts, hash
    snapshot_hash: Mapped[str] = mapped_column(String(64), default="")
    parent_version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    version_id: Mapped[int | None] = mapped_column(ForeignKey("model_versions.id"))
    progress: Mapped[dict] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    __table_args__ = (CheckConstraint(one_of("status", RUN_STATUSES), name="ck_training_runs_status"),)


class GoldItem(db.Model):
    """A comparison with a known answer, imported by an admin and mixed into every annotator's queue."""

    __tablename__ = "gold_items"
    id: Mapped[int] = mapped_column(primary_key=True)
    input_text: Mapped[str] = mapped_column(Text)
    candidates: Mapped[list] = mapped_column(JSON)  # the texts, in the file's order
    # The index (as text) of the best candidate in `candidates`, or one of GOLD_VERDICTS.
    expected: Mapped[str] = mapped_column(String(16))
    # sha256 of input and candidates: importing the same file twice adds nothing.
    item_hash: Mapped[str] = mapped_column(String(64), unique=True)
    source: Mapped[str] = mapped_column(String(128), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ArenaBattle(db.Model):
    """One input and two candidates from two versions, voted on blind; the vote is on the row, set once."""

    __tablename__ = "arena_battles"
    id: Mapped[int] = mapped_column(primary_key=True)
    prompt_id: Mapped[int | None] = mapped_column(ForeignKey("prompts.id"), index=True)
    input_text: Mapped[str] = mapped_column(Text)
    settings: Mapped[dict] = mapped_column(JSON, default=dict)
    seed: Mapped[int] = mapped_column()
    # ready (prefetched, unclaimed) | assigned | stale (its pair stopped being compared before it was claimed)
    state: Mapped[str] = mapped_column(String(16), default="assigned", index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    verdict: Mapped[str | None] = mapped_column(String(16))
    # No foreign key: the two tables would reference each other; app.arena.battles checks it is one of the battle's own.
    winner_candidate_id: Mapped[int | None] = mapped_column()
    latency_ms: Mapped[int | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    assigned_at: Mapped[datetime | None] = mapped_column()
    voted_at: Mapped[datetime | None] = mapped_column(index=True)
    candidates: Mapped[list[ArenaCandidate]] = relationship(
        back_populates="battle", order_by="ArenaCandidate.position", cascade="all, delete-orphan"
    )
    __table_args__ = (
        CheckConstraint(one_of("verdict", ARENA_VERDICTS), name="ck_arena_battles_verdict"),
        CheckConstraint("(verdict = 'choice') = (winner_candidate_id IS NOT NULL)",
                        name="ck_arena_battles_choice_has_winner"),
    )


class ArenaCandidate(db.Model):
    __tablename__ = "arena_candidates"
    id: Mapped[int] = mapped_column(primary_key=True)
    battle_id: Mapped[int] = mapped_column(ForeignKey("arena_battles.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column()  # 0: left, 1: right
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    model_prompt: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    battle: Mapped[ArenaBattle] = relationship(back_populates="candidates")
    __table_args__ = (UniqueConstraint("battle_id", "position", name="uq_arena_candidates_position"),)


class ArenaPair(db.Model):
    """A pair of versions an operator chose to compare; with none chosen, the active version meets its parent."""

    __tablename__ = "arena_pairs"
    id: Mapped[int] = mapped_column(primary_key=True)
    low_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))  # the smaller id of the two
    high_version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"))
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    __table_args__ = (
        UniqueConstraint("low_version_id", "high_version_id", name="uq_arena_pairs_versions"),
        CheckConstraint("low_version_id < high_version_id", name="ck_arena_pairs_order"),
    )


class ProbeRevision(db.Model):
    """One saved probe set: the fixed inputs every version is sampled on, to compare versions side by side.

    Never edited: a save adds a row, and the newest row is the set in force (as task revisions)."""

    __tablename__ = "probe_revisions"
    id: Mapped[int] = mapped_column(primary_key=True)
    inputs: Mapped[list] = mapped_column(JSON)
    author: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# A version's probe samples are queued, then made by the worker (running), then ready; or failed, with the error.
PROBE_STATUSES = ("queued", "running", "ready", "failed")


class ProbeSamples(db.Model):
    """A version's samples on one probe revision: [{"input", "texts", "raw"}] in the revision's order (raw: the first
    draw, before duplicates were resampled; rows made before it was kept lack it), made by the worker."""

    __tablename__ = "probe_samples"
    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("model_versions.id"), index=True)
    revision_id: Mapped[int] = mapped_column(ForeignKey("probe_revisions.id"))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    samples: Mapped[list] = mapped_column(JSON, default=list)
    settings: Mapped[dict] = mapped_column(JSON, default=dict)
    error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column()
    __table_args__ = (
        UniqueConstraint("version_id", "revision_id", name="uq_probe_samples_version_revision"),
        CheckConstraint(one_of("status", PROBE_STATUSES), name="ck_probe_samples_status"),
    )
