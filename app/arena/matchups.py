"""The pairs of versions the arena compares: the operators' choice, else the active version and its parent."""

from __future__ import annotations

from sqlalchemy import select

from app.platform.exceptions import BadInput
from app.platform.extensions import db
from app.tables import ArenaBattle, ArenaPair, ModelVersion
from app.versions.registry import active_version_id, challenger_version_id, find_version, record_event


def battle_pairs() -> list[tuple[int, int]]:
    """The pairs of versions battles are drawn from: the champion and the challenger while there is one (its verdict
    comes first), else the operators' choice, else the active version and its parent."""
    if (challenger := challenger_version_id()) is not None and (active := active_version_id()) is not None:
        return [tuple(sorted((active, challenger)))]
    chosen = db.session.execute(select(ArenaPair.low_version_id, ArenaPair.high_version_id)
                                .order_by(ArenaPair.id)).all()
    if chosen:
        return [tuple(row) for row in chosen]
    active = active_version_id()
    parent = db.session.scalar(select(ModelVersion.parent_id).where(ModelVersion.id == active)) if active else None
    return [tuple(sorted((active, parent)))] if parent else []


def add_pair(*, a: int, b: int, actor: str) -> ArenaPair:
    """Have the arena compare versions a and b from now on (instead of the default pair); audited."""
    if a == b:
        raise BadInput("choose two different versions")
    for vid in (a, b):
        find_version(vid)
    low, high = sorted((a, b))
    existing = db.session.scalars(select(ArenaPair).where(ArenaPair.low_version_id == low,
                                                          ArenaPair.high_version_id == high)).first()
    if existing is not None:
        return existing
    from sqlalchemy.exc import IntegrityError

    pair = ArenaPair(low_version_id=low, high_version_id=high, created_by=actor)
    db.session.add(pair)
    try:
        db.session.flush()
    except IntegrityError:  # the same pair added by a concurrent request (a double submit)
        db.session.rollback()
        return db.session.scalars(select(ArenaPair).where(ArenaPair.low_version_id == low,
                                                          ArenaPair.high_version_id == high)).one()
    record_event(actor=actor, action="arena_pair_added", detail={"versions": [low, high]})
    return pair


def remove_pair(*, pair_id: int, actor: str) -> None:
    """Stop comparing a chosen pair; with none left, battles go back to the active version against its parent."""
    pair = db.session.get(ArenaPair, pair_id)
    if pair is None:
        raise BadInput(f"arena pair {pair_id} not found", status=404)
    versions = [pair.low_version_id, pair.high_version_id]
    db.session.delete(pair)
    db.session.flush()
    record_event(actor=actor, action="arena_pair_removed", detail={"versions": versions})


def list_pairs() -> list[ArenaPair]:
    """The operators' chosen pairs, oldest first."""
    return list(db.session.scalars(select(ArenaPair).order_by(ArenaPair.id)))


def battle_pair(battle: ArenaBattle) -> tuple[int, int]:
    """The battle's two versions, smaller id first."""
    return tuple(sorted(c.version_id for c in battle.candidates))
