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


# Prompts sampled per generate call: on a small model one call costs about the same for 1 prompt as for 8 (the
# per-step overhead dominates), so batching cuts the CPU the refill takes from the requests it runs beside.
MAX_BATCH = 16


def fill_buffer(app: Flask, *, limit: int) -> int:
    """Top the buffer up to `limit` once it has fallen to half or less, in batched calls; returns how many were made."""
    from app.comparisons import PoolEmpty, generate_comparisons, next_pool_prompts
    from app.extensions import db
    from app.serving import get_holder

    made = 0
    holder = get_holder(app)
    with app.app_context():
        loaded = holder.current()
        # Refilling at a low-water mark rather than after every claim lets each call generate a batch.
        need = limit - ready_count(loaded.version_id) if ready_count(loaded.version_id) <= limit // 2 else 0
        while need > 0 and holder.serving() is loaded:
            try:
                prompts = next_pool_prompts(limit=min(need, MAX_BATCH))
            except PoolEmpty:
                break
            batch = generate_comparisons(loaded=loaded, inputs=[(p.text, p.id) for p in prompts], user_id=None)
            db.session.commit()
            made += len(batch)
            if holder.serving() is not loaded:
                # The model was swapped while these generated, and the swap may already have retired the old
                # buffer: retire these stragglers too, so nobody is handed the old version's samples.
                for comparison in batch:
                    comparison.state = "stale"
                db.session.commit()
            need = limit - ready_count(loaded.version_id)
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
