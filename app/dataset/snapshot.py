"""A run's data, fixed when it is queued: the bounds of the clicks it trains on, counted and hashed."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from datetime import datetime

from sqlalchemy import func, select

from app.dataset.clicks import Click, arena_votes, choice_preferences, majority_clicks
from app.dataset.pairs import build_pairs
from app.platform.extensions import db
from app.tables import Preference, utcnow


def take_snapshot(*, arena_votes: bool = False, overlap_pairs: str = "each") -> tuple[dict, str]:
    """Fix a run's data: the clicks up to the newest preference id (and, with arena_votes, the votes cast until
    now), counted and hashed in one streamed pass.

    The run row keeps those bounds, not every id, and this runs before the retrain lock is taken: its work grows
    with the clicks, and the lock must only cover the check for an open run and the insert."""
    upto = db.session.scalar(select(func.max(Preference.id))) or 0
    # The overlap policy too (OVERLAP_PAIRS): which of an overlapping comparison's answers train is part of the data.
    snapshot = {"max_preference_id": upto, "overlap_pairs": overlap_pairs}
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
    """The clicks a run's snapshot names: up to its bound, then the arena votes cast until its vote bound, if any."""
    upto = snapshot.get("max_preference_id") or 0
    clicks = choice_preferences(upto=upto)
    # Snapshots from before the setting have no policy: every answer trained then.
    yield from (majority_clicks(clicks, upto=upto) if snapshot.get("overlap_pairs") == "majority" else clicks)
    if "votes_until" in snapshot:
        yield from arena_votes(until=datetime.fromisoformat(snapshot["votes_until"]))


def snapshot_hash(pairs: Iterable[dict]) -> str:
    """A stable hash of the exact training data."""
    h = hashlib.sha256()
    for pair in pairs:
        h.update(json.dumps([pair["prompt"], pair["chosen"], pair["rejected"]]).encode())
    return h.hexdigest()
