"""The buffers of ready work the prefetcher fills and the web hands out: how full they are, and retiring what no
request may be handed any more (another version's comparisons, battles of pairs no longer compared)."""

from __future__ import annotations

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import joinedload

from app.arena.matchups import battle_pair
from app.platform.extensions import db
from app.tables import ArenaBattle, Comparison


def ready_count(version_id: int, revision: int) -> int:
    """Unclaimed prefetched comparisons of a version, rendered under task revision `revision`."""
    return db.session.scalar(
        select(func.count(Comparison.id)).where(Comparison.state == "ready", Comparison.model_version_id == version_id,
                                                Comparison.task_revision_id == revision)
    ) or 0


def retire_comparisons(*, keep_version_id: int | None, keep_revision_id: int | None = None) -> int:
    """Retire unclaimed prefetched comparisons of any version but the serving one (and, given keep_revision_id, of
    any task revision but that one: their prompts were rendered with another system prompt)."""
    stale = Comparison.model_version_id != keep_version_id
    if keep_revision_id is not None:
        stale = or_(stale, Comparison.task_revision_id.is_(None), Comparison.task_revision_id != keep_revision_id)
    n = db.session.execute(
        update(Comparison).where(Comparison.state == "ready", stale).values(state="stale")
    ).rowcount
    db.session.commit()
    return n


def retire_ready(*, pairs: list[tuple[int, int]]) -> int:
    """Mark stale the prefetched battles of pairs no longer compared (the default pair moves with each promotion),
    so the ready set holds only battles someone can be handed."""
    ready = db.session.scalars(select(ArenaBattle).options(joinedload(ArenaBattle.candidates))
                               .where(ArenaBattle.state == "ready")).unique().all()
    old = [b.id for b in ready if battle_pair(b) not in pairs]
    if old:
        db.session.execute(update(ArenaBattle).where(ArenaBattle.id.in_(old), ArenaBattle.state == "ready")
                           .values(state="stale"))
        db.session.commit()
    return len(old)
