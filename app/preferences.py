"""Answers: store one per comparison, undo the latest, turn them into DPO pairs, export."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app.comparisons import get_comparison
from app.extensions import db
from app.registry import record_event
from app.tables import Comparison, Preference, User
from app.validation import BadInput


def record_answer(
    *, user_id: int, comparison_id: int, candidate_id: int | None, verdict: str, latency_ms: int | None = None
) -> tuple[Preference, bool]:
    """Store an answer in one transaction; return (row, created). A repeat of the same answer is a no-op.

    The API checks its body with app.schemas.AnswerBody first (verdicts: app.tables.VERDICTS)."""
    comparison = get_comparison(comparison_id=comparison_id, user_id=user_id)
    if candidate_id is not None and candidate_id not in {c.id for c in comparison.candidates}:
        raise BadInput(f"candidate {candidate_id} is not part of comparison {comparison_id}", status=422)
    existing = comparison.preference
    if existing is None:
        pref = Preference(
            comparison_id=comparison_id, user_id=user_id, verdict=verdict,
            chosen_candidate_id=candidate_id, latency_ms=latency_ms,
        )
        db.session.add(pref)
        try:
            db.session.commit()
            return pref, True
        except IntegrityError:
            # A concurrent submit won the unique constraint; fall through and compare with it.
            db.session.rollback()
            existing = db.session.scalars(select(Preference).where(Preference.comparison_id == comparison_id)).one()
    if existing.verdict == verdict and existing.chosen_candidate_id == candidate_id:
        return existing, False
    raise BadInput(f"comparison {comparison_id} already has a different answer; undo it first", status=409)


def undo_last_answer(*, user_id: int, comparison_id: int | None = None) -> Comparison:
    """Delete the user's latest answer (only while it is the latest) and return its comparison."""
    if comparison_id is not None:
        get_comparison(comparison_id=comparison_id, user_id=user_id)  # unknown or someone else's: a plain 404
    latest = db.session.scalars(
        select(Preference).where(Preference.user_id == user_id).order_by(Preference.id.desc()).limit(1)
    ).first()
    if latest is None:
        raise BadInput("there is no answer to undo", status=409)
    if comparison_id is not None and latest.comparison_id != comparison_id:
        raise BadInput("only your latest answer can be undone", status=409)
    comparison = latest.comparison
    detail = {"comparison_id": latest.comparison_id, "verdict": latest.verdict,
              "chosen_candidate_id": latest.chosen_candidate_id}
    db.session.delete(latest)
    db.session.flush()
    user = db.session.get(User, user_id)
    # The audit row keeps what was undone; record_event commits both in one transaction.
    record_event(actor=user.name if user else str(user_id), action="undo_answer", detail=detail)
    return comparison


def build_pairs(preferences: Iterable[Preference]) -> Iterator[dict]:
    """The one place clicks become DPO pairs: best vs each other candidate; ties, all-bad and skips never do."""
    for pref in preferences:
        if pref.verdict != "choice":
            continue
        comparison = pref.comparison
        chosen = next(c for c in comparison.candidates if c.id == pref.chosen_candidate_id)
        for other in comparison.candidates:
            if other.id == chosen.id or other.text == chosen.text:
                continue
            # Leading space on completions, not the prompt: TRL wants the prompt to be a token prefix.
            yield {
                "prompt": comparison.model_prompt,
                "chosen": " " + chosen.text,
                "rejected": " " + other.text,
                "comparison_id": comparison.id,
                "preference_id": pref.id,
                "input": comparison.input_text,
                "model_version_id": comparison.model_version_id,
            }


def choice_preferences(*, ids: list[int] | None = None) -> list[Preference]:
    """All 'choice' answers (optionally only these ids), oldest first."""
    stmt = select(Preference).where(Preference.verdict == "choice").order_by(Preference.id)
    if ids is not None:
        stmt = stmt.where(Preference.id.in_(ids))
    return list(db.session.scalars(stmt))


def export_lines() -> Iterator[str]:
    """JSON lines in TRL's standard preference format, two pairs per click."""
    for pair in build_pairs(choice_preferences()):
        yield json.dumps(pair, ensure_ascii=False) + "\n"


def snapshot_hash(pairs: list[dict]) -> str:
    """A stable hash of the exact training data."""
    h = hashlib.sha256()
    for pair in pairs:
        h.update(json.dumps([pair["prompt"], pair["chosen"], pair["rejected"]]).encode())
    return h.hexdigest()


def progress(*, user_id: int) -> dict:
    """Counters for the annotation page, in one statement (it runs on every click: one round trip, not four)."""
    from app.tables import Prompt

    mine = select(func.count(Preference.id)).where(Preference.user_id == user_id).scalar_subquery()
    total = select(func.count(Preference.id)).scalar_subquery()
    answered_prompts = (
        select(func.count(func.distinct(Comparison.prompt_id)))
        .join(Preference, Preference.comparison_id == Comparison.id)
        .where(Comparison.prompt_id.is_not(None))
        .scalar_subquery()
    )
    pool = select(func.count(Prompt.id)).scalar_subquery()
    row = db.session.execute(select(mine, total, pool, answered_prompts)).one()
    return {"mine": row[0] or 0, "total": row[1] or 0, "pool": row[2] or 0, "pool_answered": row[3] or 0}
