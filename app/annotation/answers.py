"""Answers: store one per comparison, undo the latest, turn them into DPO pairs, export."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import groupby

from flask import current_app, has_app_context
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from app.comparisons import get_comparison
from app.extensions import db
from app.registry import record_event
from app.tables import Candidate, Comparison, Preference, User
from app.validation import BadInput


def record_answer(
    *, user_id: int, comparison_id: int, candidate_id: int | None, verdict: str, latency_ms: int | None = None,
    also_good: Iterable[int] = (),
) -> tuple[Preference, bool]:
    """Store an answer in one transaction; return (row, created). A repeat of the same answer is a no-op.

    also_good: with a choice, the other candidates the annotator finds acceptable too. The API checks its body
    with app.schemas.AnswerBody first (verdicts: app.tables.VERDICTS)."""
    comparison = get_comparison(comparison_id=comparison_id, user_id=user_id)
    ids = {c.id for c in comparison.candidates}
    marked = sorted(set(also_good)) or None
    for cid in [candidate_id, *(marked or [])]:
        if cid is not None and cid not in ids:
            raise BadInput(f"candidate {cid} is not part of comparison {comparison_id}", status=422)
    if marked and (candidate_id is None or candidate_id in marked):
        raise BadInput("also_good lists other acceptable candidates beside the chosen one", status=422)
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
    db.session.flush()
    user = db.session.get(User, user_id)
    # The audit row keeps what was undone; record_event commits both in one transaction.
    record_event(actor=user.name if user else str(user_id), action="undo_answer", detail=detail)
    return comparison


@dataclass(frozen=True)
class Click:
    """One 'choice' answer (or arena vote) as plain values, with its candidates in display order."""

    preference_id: int | None
    comparison_id: int | None
    model_prompt: str
    input_text: str
    model_version_id: int
    chosen_candidate_id: int
    candidates: tuple[tuple[int, str], ...]  # (candidate id, text)
    also_good: tuple[int, ...] = ()  # other candidates marked acceptable: never trained as worse than the chosen
    battle_id: int | None = None  # an arena vote: its candidates come from the versions below, one each
    versions: tuple[int, ...] = ()
    voted_at: str = ""  # ISO time of the vote (what "new since the last run" means for votes)


def build_pairs(clicks: Iterable[Click]) -> Iterator[dict]:
    """The one place clicks become DPO pairs: best vs each other candidate (ties, all-bad and skips are no clicks).

    Candidates marked also good are not rejected against the best: each good one (the best first) is chosen against
    each of the rest, so an acceptable answer is never pushed down; all marked good gives no pair, as a tie."""
    for click in clicks:
        text_of = dict(click.candidates)
        good = [click.chosen_candidate_id, *(c for c in click.also_good if c != click.chosen_candidate_id)]
        good_texts = {text_of[cid] for cid in good}
        # An arena vote's candidates each come from a version: which one, for the rejected side's record.
        version_of = ({} if click.battle_id is None
                      else dict(zip((c for c, _ in click.candidates), click.versions, strict=True)))
        for chosen_id in good:
            for cid, text in click.candidates:
                # A candidate with the text of a good one is that text again, not a worse answer.
                if text in good_texts:
                    continue
                # Leading space on completions, not the prompt: TRL wants the prompt to be a token prefix.
                pair = {"prompt": click.model_prompt, "chosen": " " + text_of[chosen_id], "rejected": " " + text,
                        "input": click.input_text}
                if click.battle_id is None:
                    yield pair | {"comparison_id": click.comparison_id, "preference_id": click.preference_id,
                                  "model_version_id": click.model_version_id}
                else:
                    yield pair | {"battle_id": click.battle_id, "chosen_version_id": click.model_version_id,
                                  "rejected_version_id": version_of[cid], "voted_at": click.voted_at}


# Rows per round trip. The stream holds one batch, never the table: bench/export.py, docs/BENCHMARKS.md.
BATCH = 1000


def choice_preferences(*, ids: Iterable[int] | None = None, upto: int | None = None) -> Iterator[Click]:
    """Every 'choice' answer (only these ids, or none newer than `upto`), oldest first, streamed by one query."""
    stmt = (
        select(Preference.id, Preference.chosen_candidate_id, Comparison.id, Comparison.model_prompt,
               Comparison.input_text, Comparison.model_version_id, Candidate.id, Candidate.text, Preference.also_good)
        .join(Comparison, Comparison.id == Preference.comparison_id)
        .join(Candidate, Candidate.comparison_id == Comparison.id)
        .where(Preference.verdict == "choice", Comparison.gold_item_id.is_(None))  # gold answers never train
        .order_by(Preference.id, Candidate.position)
        .execution_options(yield_per=BATCH)  # a server-side cursor on Postgres
    )
    if ids is not None:
        stmt = stmt.where(Preference.id.in_(list(ids)))
    if upto is not None:
        stmt = stmt.where(Preference.id <= upto)
    for _, rows in groupby(db.session.execute(stmt), key=lambda row: row[0]):
        rows = list(rows)
        pref_id, chosen_id, comparison_id, model_prompt, input_text, version_id = rows[0][:6]
        yield Click(pref_id, comparison_id, model_prompt, input_text, version_id, chosen_id,
                    tuple((row[6], row[7]) for row in rows), also_good=tuple(rows[0][8] or ()))


def take_snapshot(*, arena_votes: bool = False) -> tuple[dict, str]:
    """Fix a run's data: the clicks up to the newest preference id (and, with arena_votes, the votes cast until
    now), counted and hashed in one streamed pass.

    The run row keeps those bounds, not every id, and this runs before the retrain lock is taken: its work grows
    with the clicks, and the lock must only cover the check for an open run and the insert."""
    from app.tables import utcnow

    upto = db.session.scalar(select(func.max(Preference.id))) or 0
    snapshot = {"max_preference_id": upto}
    if arena_votes:
        # By vote time, not battle id: a battle's id is fixed when it is generated, and one handed out before the
        # snapshot but voted on after it would otherwise join a run that was already fixed.
        snapshot["votes_until"] = utcnow().isoformat()
    counts = {"clicks": 0, "votes": 0, "pairs": 0}

    def counted(items, key=None):
        for item in items:
            counts[key or ("votes" if getattr(item, "battle_id", None) else "clicks")] += 1
            yield item

    digest = snapshot_hash(counted(build_pairs(counted(snapshot_clicks(snapshot))), "pairs"))
    if not arena_votes:
        del counts["votes"]
    return snapshot | counts, digest


def snapshot_clicks(snapshot: dict) -> Iterator[Click]:
    """The clicks a run's snapshot names: up to its bound (runs queued before bounds existed list their ids), then
    the arena votes cast until its vote bound, if it has one."""
    from datetime import datetime

    if "preference_ids" in snapshot:
        yield from choice_preferences(ids=snapshot["preference_ids"])
    else:
        yield from choice_preferences(upto=snapshot.get("max_preference_id") or 0)
    if "votes_until" in snapshot:
        yield from arena_votes(until=datetime.fromisoformat(snapshot["votes_until"]))


def arena_votes(*, until=None) -> Iterator[Click]:
    """Every arena vote for a winner (none cast after `until`), oldest battle first, as a click on the winner with
    its prompt as its version saw it."""
    from app.tables import ArenaBattle, ArenaCandidate

    stmt = (
        select(ArenaBattle.id, ArenaBattle.winner_candidate_id, ArenaBattle.input_text, ArenaCandidate.id,
               ArenaCandidate.text, ArenaCandidate.version_id, ArenaCandidate.model_prompt, ArenaBattle.voted_at)
        .join(ArenaCandidate, ArenaCandidate.battle_id == ArenaBattle.id)
        .where(ArenaBattle.verdict == "choice")
        .order_by(ArenaBattle.id, ArenaCandidate.position)
        .execution_options(yield_per=BATCH)
    )
    if until is not None:
        stmt = stmt.where(ArenaBattle.voted_at <= until)
    for battle_id, rows in groupby(db.session.execute(stmt), key=lambda row: row[0]):
        rows = list(rows)
        winner = next(row for row in rows if row[3] == row[1])
        yield Click(None, None, winner[6], rows[0][2], winner[5], winner[1], tuple((r[3], r[4]) for r in rows),
                    battle_id=battle_id, versions=tuple(r[5] for r in rows), voted_at=rows[0][7].isoformat())


def export_lines(*, arena: bool = False) -> Iterator[str]:
    """JSON lines in TRL's standard preference format (the pairs of build_pairs), in constant memory."""
    beat = _heartbeat()
    for n, pair in enumerate(build_pairs(arena_votes() if arena else choice_preferences())):
        if n % BATCH == 0:
            beat()
        yield json.dumps(pair, ensure_ascii=False) + "\n"


def _heartbeat() -> Callable[[], None]:
    """The web server's liveness call (gunicorn's worker notify, see app/gunicorn_conf.py), else a no-op.

    A sync worker tells gunicorn's master it is alive only between requests, so an export longer than the
    `timeout` was killed midway, after its 200 had gone out; calling this while rows keep coming prevents that."""
    beat = current_app.extensions.get("prefloop_heartbeat") if has_app_context() else None
    return beat or (lambda: None)


def snapshot_hash(pairs: Iterable[dict]) -> str:
    """A stable hash of the exact training data."""
    h = hashlib.sha256()
    for pair in pairs:
        h.update(json.dumps([pair["prompt"], pair["chosen"], pair["rejected"]]).encode())
    return h.hexdigest()


def progress(*, user_id: int, fresh: bool = False) -> dict:
    """Counters for the annotation page: the user's own exact, the shared ones from shared_progress()."""
    mine = db.session.scalar(select(func.count(Preference.id)).where(Preference.user_id == user_id)) or 0
    return {"mine": mine} | shared_progress(fresh=fresh)


def shared_progress(*, fresh: bool = False) -> dict:
    """All answers, pool size and answered pool prompts, counted at most every PROGRESS_CACHE_SECONDS per process."""
    from app.tables import Prompt

    # These count whole tables, and both click responses carry them: at 100k clicks 5.7 ms a call on Postgres,
    # 0.7 cached (bench/progress.py), twice per click, growing with the table. Totals a few seconds old cost an
    # annotator nothing; their own count stays exact (an index range). The admin page asks for fresh ones: it is
    # shown right after an import.
    cache = current_app.extensions.setdefault("prefloop_shared_progress", {})
    now = time.monotonic()
    if fresh or "counts" not in cache or now - cache["at"] >= current_app.config["PROGRESS_CACHE_SECONDS"]:
        total = select(func.count(Preference.id)).scalar_subquery()
        answered_prompts = (
            select(func.count(func.distinct(Comparison.prompt_id)))
            .join(Preference, Preference.comparison_id == Comparison.id)
            .where(Comparison.prompt_id.is_not(None))
            .scalar_subquery()
        )
        pool = select(func.count(Prompt.id)).scalar_subquery()
        row = db.session.execute(select(total, pool, answered_prompts)).one()
        cache.update(at=now, counts={"total": row[0] or 0, "pool": row[1] or 0, "pool_answered": row[2] or 0})
    return cache["counts"]
