"""A per-process thread that keeps a buffer of ready comparisons for pool prompts, bound to the serving version."""

from __future__ import annotations

import logging
import threading

from flask import Flask
from sqlalchemy import func, select

log = logging.getLogger(__name__)


def ready_count(version_id: int) -> int:
    """Unclaimed prefetched comparisons of a version."""
    from app.extensions import db
    from app.tables import Comparison

    return db.session.scalar(
        select(func.count(Comparison.id)).where(Comparison.state == "ready", Comparison.model_version_id == version_id)
    ) or 0


def fill_buffer(app: Flask, *, limit: int) -> int:
    """Generate ready comparisons until the buffer holds `limit`; returns how many were made."""
    from app.comparisons import PoolEmpty, generate_comparison, next_pool_prompt
    from app.extensions import db
    from app.serving import get_holder

    made = 0
    holder = get_holder(app)
    with app.app_context():
        loaded = holder.current()
        while ready_count(loaded.version_id) < limit and holder.serving() is loaded:
            try:
                prompt = next_pool_prompt()
            except PoolEmpty:
                break
            comparison = generate_comparison(loaded=loaded, input_text=prompt.text, prompt_id=prompt.id, user_id=None)
            db.session.commit()
            made += 1
            if holder.serving() is not loaded:
                # The model was swapped while this one generated, and the swap may already have retired the old
                # buffer: retire this straggler too, so nobody is handed the old version's samples.
                comparison.state = "stale"
                db.session.commit()
        db.session.remove()
    return made


def wake_prefetcher(app: Flask) -> None:
    """Ask this process's prefetch thread to top the buffer up."""
    event = app.extensions.get("prefloop_prefetch_wake")
    if event is not None:
        event.set()


def start_prefetcher(app: Flask) -> None:
    """Start the refill thread (only in served processes; tests call fill_buffer directly)."""
    if app.config["PREFETCH_SIZE"] <= 0 or "prefloop_prefetch_wake" in app.extensions:
        return
    wake = app.extensions["prefloop_prefetch_wake"] = threading.Event()

    def run() -> None:
        while True:
            wake.wait(timeout=5)
            wake.clear()
            try:
                fill_buffer(app, limit=app.config["PREFETCH_SIZE"])
            except Exception as exc:  # noqa: BLE001 - a failed refill must not kill the thread; requests still generate inline
                log.warning("prefetch refill failed: %s", exc)

    threading.Thread(target=run, daemon=True, name="prefetch").start()
    wake.set()
