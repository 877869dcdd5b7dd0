"""Clicks read from the database as plain values: every 'choice' answer, and every arena vote for a winner."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import groupby

from sqlalchemy import case, func, select

from app.platform.extensions import db
from app.tables import ArenaBattle, ArenaCandidate, Candidate, Comparison, Preference


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
    # The answer's record, for exports and the overlap policy: the comparison's original (itself unless it is an
    # overlap copy), who answered (a user id, never exported as such), when, how fast, and under which task text.
    group_id: int | None = None
    user_id: int | None = None
    answered_at: str = ""
    latency_ms: int | None = None
    task_revision: int | None = None
    verdict: str = "choice"


# Rows per round trip. The stream holds one batch, never the table: bench/export.py, docs/BENCHMARKS.md.
BATCH = 1000


def choice_preferences(*, upto: int | None = None, verdicts: tuple[str, ...] = ("choice",)) -> Iterator[Click]:
    """Every answer with one of `verdicts` (none newer than `upto`), oldest first, streamed by one query."""
    stmt = (
        select(Preference.id, Preference.chosen_candidate_id, Comparison.id, Comparison.model_prompt,
               Comparison.input_text, Comparison.model_version_id, Candidate.id, Candidate.text, Preference.also_good,
               func.coalesce(Comparison.root_id, Comparison.id), Preference.user_id, Preference.created_at,
               Preference.latency_ms, Comparison.task_revision_id, Preference.verdict)
        .join(Comparison, Comparison.id == Preference.comparison_id)
        .join(Candidate, Candidate.comparison_id == Comparison.id)
        .where(Preference.verdict.in_(verdicts), Comparison.gold_item_id.is_(None))  # gold answers never train
        .order_by(Preference.id, Candidate.position)
        .execution_options(yield_per=BATCH)  # a server-side cursor on Postgres
    )
    if upto is not None:
        stmt = stmt.where(Preference.id <= upto)
    for _, rows in groupby(db.session.execute(stmt), key=lambda row: row[0]):
        rows = list(rows)
        pref_id, chosen_id, comparison_id, model_prompt, input_text, version_id = rows[0][:6]
        group_id, user_id, answered_at, latency_ms, revision, verdict = rows[0][9:]
        yield Click(pref_id, comparison_id, model_prompt, input_text, version_id, chosen_id,
                    tuple((row[6], row[7]) for row in rows), also_good=tuple(rows[0][8] or ()), group_id=group_id,
                    user_id=user_id, answered_at=answered_at.isoformat(), latency_ms=latency_ms,
                    task_revision=revision, verdict=verdict)


def majority_clicks(clicks: Iterable[Click], *, upto: int | None = None) -> Iterator[Click]:
    """OVERLAP_PAIRS=majority: of the answers to one comparison and its overlap copies, the newest click on the pick
    more than half of them chose (skips are not counted: they judge nothing); a split gives nothing.

    A comparison answered once passes as it is. The others wait until all their clicks have come by (the counts
    come from one grouped query first), so only groups still open at the stream's position are held."""
    group = func.coalesce(Comparison.root_id, Comparison.id)
    stmt = (select(group, func.count(), func.sum(case((Preference.verdict == "choice", 1), else_=0)))
            .join(Comparison, Comparison.id == Preference.comparison_id)
            .where(Preference.verdict != "skip", Comparison.gold_item_id.is_(None)).group_by(group))
    if upto is not None:
        stmt = stmt.where(Preference.id <= upto)
    answered = {g: (int(total), int(choices)) for g, total, choices in db.session.execute(stmt)}
    held: dict[int, list[Click]] = {}
    for click in clicks:
        total, choices = answered.get(click.group_id, (1, 1))
        if total <= 1:
            yield click
            continue
        seen = held.setdefault(click.group_id, [])
        seen.append(click)
        if len(seen) < choices:
            continue
        del held[click.group_id]
        # Copies show the same texts in their own order with their own ids: a pick is its text.
        picks = Counter(dict(c.candidates)[c.chosen_candidate_id] for c in seen)
        text, votes = picks.most_common(1)[0]
        if 2 * votes > total:
            # The newest agreeing click: the one that made the majority, so a run counts it as new, not as replay.
            yield max((c for c in seen if dict(c.candidates)[c.chosen_candidate_id] == text),
                      key=lambda c: c.preference_id)


def arena_votes(*, until=None) -> Iterator[Click]:
    """Every arena vote for a winner (none cast after `until`), oldest battle first, as a click on the winner with
    its prompt as its version saw it."""
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
