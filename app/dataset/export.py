"""Exports: the clicks (or the arena's votes) as DPO pairs, one JSON line each, streamed in constant memory."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

from flask import current_app, has_app_context

from app.dataset.clicks import BATCH, arena_votes, choice_preferences
from app.dataset.pairs import build_pairs


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
