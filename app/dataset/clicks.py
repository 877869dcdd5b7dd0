"""Clicks read from the database as plain values: every 'choice' answer, and every arena vote for a winner."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import groupby

from sqlalchemy import select

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


# Rows per round trip. The stream holds one batch, never the table: bench/export.py, docs/BENCHMARKS.md.
BATCH = 1000


def choice_preferences(*, upto: int | None = None) -> Iterator[Click]:
    """Every 'choice' answer (none newer than `upto`), oldest first, streamed by one query."""
    stmt = (
        select(Preference.id, Preference.chosen_candidate_id, Comparison.id, Comparison.model_prompt,
               Comparison.input_text, Comparison.model_version_id, Candidate.id, Candidate.text, Preference.also_good)
        .join(Comparison, Comparison.id == Preference.comparison_id)
        .join(Candidate, Candidate.comparison_id == Comparison.id)
        .where(Preference.verdict == "choice", Comparison.gold_item_id.is_(None))  # gold answers never train
        .order_by(Preference.id, Candidate.position)
        .execution_options(yield_per=BATCH)  # a server-side cursor on Postgres
    )
    if upto is not None:
        stmt = stmt.where(Preference.id <= upto)
    for _, rows in groupby(db.session.execute(stmt), key=lambda row: row[0]):
        rows = list(rows)
        pref_id, chosen_id, comparison_id, model_prompt, input_text, version_id = rows[0][:6]
        yield Click(pref_id, comparison_id, model_prompt, input_text, version_id, chosen_id,
                    tuple((row[6], row[7]) for row in rows), also_good=tuple(rows[0][8] or ()))


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
