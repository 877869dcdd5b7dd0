"""Answers: store one per comparison, undo the latest, and the progress counters the annotation page shows."""

from __future__ import annotations

import time
from collections.abc import Iterable

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import joinedload

from app.annotation.comparisons import get_comparison, in_queue
from app.platform.exceptions import BadInput
from app.platform.extensions import db
from app.platform.redis_client import get_redis
from app.tables import AnswerChange, Comparison, Preference, Prompt, TrainingRun, User, utcnow
from app.versions.registry import record_event


def record_answer(
    *, user_id: int, comparison_id: int, candidate_id: int | None, verdict: str, latency_ms: int | None = None,
    also_good: Iterable[int] = (),
) -> tuple[Preference, bool]:
    """Store an answer in one transaction; return (row, created). A repeat of the same answer is a no-op.

    also_good: with a choice, the other candidates the annotator finds acceptable too. The API checks its body
    with app.web.schemas.AnswerBody first (verdicts: app.tables.VERDICTS)."""
    comparison = get_comparison(comparison_id=comparison_id, user_id=user_id)
    marked = check_answer(comparison, candidate_id=candidate_id, also_good=also_good)
    existing = comparison.preference
    if existing is None:
        pref = Preference(
            comparison_id=comparison_id, user_id=user_id, verdict=verdict,
            chosen_candidate_id=candidate_id, also_good=marked, latency_ms=latency_ms,
        )
        db.session.add(pref)
        try:
            db.session.commit()
            return pref, True
        except IntegrityError:
            # A concurrent submit won the unique constraint; fall through and compare with it.
            db.session.rollback()
            existing = db.session.scalars(select(Preference).where(Preference.comparison_id == comparison_id)).one()
    if existing.verdict == verdict and existing.chosen_candidate_id == candidate_id and existing.also_good == marked:
        return existing, False
    raise BadInput(f"comparison {comparison_id} already has a different answer; undo it first", status=409)


def check_answer(comparison: Comparison, *, candidate_id: int | None, also_good: Iterable[int]) -> list[int] | None:
    """The sorted also-good ids (None for none), once every id is checked to be one of the comparison's."""
    ids = {c.id for c in comparison.candidates}
    marked = sorted(set(also_good)) or None
    for cid in [candidate_id, *(marked or [])]:
        if cid is not None and cid not in ids:
            raise BadInput(f"candidate {cid} is not part of comparison {comparison.id}", status=422)
    if marked and (candidate_id is None or candidate_id in marked):
        raise BadInput("also_good lists other acceptable candidates beside the chosen one", status=422)
    return marked


def change_answer(
    *, user_id: int, comparison_id: int, candidate_id: int | None, verdict: str, latency_ms: int | None = None,
    also_good: Iterable[int] = (),
) -> tuple[Preference, str]:
    """Change your answer to a comparison; (answer, "replaced" | "superseded" | "unchanged"). Audited.

    While no training run has snapshotted the old answer it is replaced in place. Once one has, that run keeps what
    it read: the old row goes, and the new answer is a new row (a new id, past every run's bound), so the next run
    reads it. Either way the old answer is kept in answer_changes."""
    comparison = get_comparison(comparison_id=comparison_id, user_id=user_id)
    marked = check_answer(comparison, candidate_id=candidate_id, also_good=also_good)
    old = comparison.preference
    if old is None:
        raise BadInput(f"comparison {comparison_id} has no answer to change; answer it first", status=409)
    if (old.verdict, old.chosen_candidate_id, old.also_good) == (verdict, candidate_id, marked):
        return old, "unchanged"
    before = {"verdict": old.verdict, "chosen_candidate_id": old.chosen_candidate_id, "also_good": old.also_good}
    mode = "superseded" if old.id <= snapshotted_upto() else "replaced"
    db.session.add(AnswerChange(comparison_id=comparison_id, preference_id=old.id, user_id=user_id,
                                verdict=old.verdict, chosen_candidate_id=old.chosen_candidate_id,
                                also_good=old.also_good, latency_ms=old.latency_ms, answered_at=old.created_at,
                                mode=mode))
    if mode == "superseded":
        top = db.session.scalar(select(func.max(Preference.id)))
        db.session.delete(old)
        db.session.flush()
        old = Preference(comparison_id=comparison_id, user_id=user_id)
        if db.session.get_bind().dialect.name == "sqlite":
            # SQLite hands the id of a deleted newest row out again: the new answer must come after every bound.
            old.id = top + 1
        db.session.add(old)
    old.verdict, old.chosen_candidate_id, old.also_good, old.latency_ms = verdict, candidate_id, marked, latency_ms
    db.session.flush()
    user = db.session.get(User, user_id)
    record_event(actor=user.name, action="answer_changed",
                 detail={"comparison_id": comparison_id, "mode": mode, "before": before,
                         "after": {"verdict": verdict, "chosen_candidate_id": candidate_id, "also_good": marked}})
    return old, mode


def snapshotted_upto() -> int:
    """The newest preference id any training run has fixed in its snapshot (0 before any run)."""
    bounds = [(snapshot or {}).get("max_preference_id") or 0
              for snapshot in db.session.scalars(select(TrainingRun.snapshot))]
    return max(bounds, default=0)


def my_answers(*, user_id: int, query: str = "", limit: int = 20, offset: int = 0) -> tuple[list[Comparison], int]:
    """Your answered comparisons, newest answer first, whose input contains `query` (any case); and how many match."""
    stmt = (select(Comparison).join(Preference, Preference.comparison_id == Comparison.id)
            .where(Preference.user_id == user_id, Comparison.gold_item_id.is_(None)))
    if query:
        # A search word, not a pattern: % and _ match themselves.
        escaped = query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(Comparison.input_text.ilike(f"%{escaped}%", escape="\\"))
    total = db.session.scalar(select(func.count()).select_from(stmt.subquery())) or 0
    rows = db.session.scalars(stmt.order_by(Preference.id.desc()).limit(limit).offset(offset)
                              .options(joinedload(Comparison.candidates), joinedload(Comparison.preference))).unique()
    return list(rows), total


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
              "chosen_candidate_id": latest.chosen_candidate_id, "also_good": latest.also_good}
    db.session.delete(latest)
    comparison.shown_at = utcnow()  # shown again, to be answered again
    db.session.flush()
    user = db.session.get(User, user_id)
    # The audit row keeps what was undone; record_event commits both in one transaction.
    record_event(actor=user.name if user else str(user_id), action="undo_answer", detail=detail)
    return comparison


def progress(*, user_id: int, fresh: bool = False) -> dict:
    """Counters for the annotation page: the user's own exact, the shared ones from shared_progress()."""
    mine = db.session.scalar(select(func.count(Preference.id)).where(Preference.user_id == user_id)) or 0
    return {"mine": mine} | shared_progress(fresh=fresh)


def shared_progress(*, fresh: bool = False) -> dict:
    """All answers, pool size, answered pool prompts and the pool prompts still needing answers, counted at most every
    PROGRESS_CACHE_SECONDS, and shared by every process through Redis where there is one."""
    # These count whole tables, and both click responses carry them: at 100k clicks 5.7 ms a call on Postgres,
    # 0.7 cached (bench/progress.py), twice per click, growing with the table. Totals a few seconds old cost an
    # annotator nothing; their own count stays exact (an index range). One cache for all processes: with one each,
    # an annotator whose clicks went to two processes saw "all" go down. The admin page asks for fresh ones.
    import json

    import redis

    ttl = current_app.config["PROGRESS_CACHE_SECONDS"]
    cache = current_app.extensions.setdefault("prefloop_shared_progress", {})
    now = time.monotonic()
    conn = get_redis()
    if not fresh and ttl > 0:
        try:
            if conn is not None and (stored := conn.get(PROGRESS_KEY)):
                return json.loads(stored)
        except redis.RedisError:
            conn = None  # counted here instead; a dead Redis must not fail a click
        if conn is None and "counts" in cache and now - cache["at"] < ttl:
            return cache["counts"]
    counts = count_progress(overlap=current_app.config["ANNOTATION_OVERLAP"])
    cache.update(at=now, counts=counts)
    if conn is not None and ttl > 0:
        try:
            conn.set(PROGRESS_KEY, json.dumps(counts), px=int(ttl * 1000))
        except redis.RedisError:
            pass
    return counts


PROGRESS_KEY = "prefloop:progress"


def count_progress(*, overlap: int) -> dict:
    """The shared counters, counted now: answers, pool prompts, those answered, and those still needing answers
    (fewer than `overlap` answers on their comparisons; skips count as answers, they were looked at)."""
    answers_of = (
        select(func.count(Preference.id)).join(Comparison, Comparison.id == Preference.comparison_id)
        .where(Comparison.prompt_id == Prompt.id).correlate(Prompt).scalar_subquery()
    )
    total = select(func.count(Preference.id)).scalar_subquery()
    answered = select(func.count(Prompt.id)).where(answers_of > 0, Prompt.removed_at.is_(None)).scalar_subquery()
    # Flagged inputs wait for review and removed ones are gone: neither is work to do now.
    remaining = select(func.count(Prompt.id)).where(answers_of < overlap, in_queue(Prompt.id)).scalar_subquery()
    pool = select(func.count(Prompt.id)).where(Prompt.removed_at.is_(None)).scalar_subquery()
    row = db.session.execute(select(total, pool, answered, remaining)).one()
    return {"total": row[0] or 0, "pool": row[1] or 0, "pool_answered": row[2] or 0, "remaining": row[3] or 0}
