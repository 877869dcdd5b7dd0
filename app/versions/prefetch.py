"""The prefetcher: one process beside the web workers that keeps the buffers full: ready comparisons for pool
prompts, bound to the serving version, and ready arena battles; every web process hands out from them (the
buffers are rows in the database, app/versions/buffer.py).

Its own process, not a thread in each web worker: sampling a small model is mostly Python, so a refill in a thread
holds the GIL about half the time a request next to it needs it (measured: answer p95 40 ms with a refill thread
beside it). gunicorn's master starts it (app/gunicorn_conf.py) and it exits when the master does.

    python -m app.versions.prefetch
"""

from __future__ import annotations

import logging
import os
import time
from functools import partial

from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from app.annotation.comparisons import generate_comparisons, next_pool_prompts, store_comparisons
from app.annotation.task import current_revision_id, current_task
from app.arena.battles import generate_battles, in_use, pool_inputs
from app.arena.matchups import battle_pair, battle_pairs
from app.platform.exceptions import BadInput, PoolEmpty
from app.platform.extensions import db
from app.tables import ArenaBattle, TaskRevision
from app.versions.buffer import ready_count, retire_comparisons, retire_ready
from app.versions.handoff import keys
from app.versions.serving import get_holder, listen_for_changes

log = logging.getLogger(__name__)


# Prompts sampled per call. The per-step overhead dominates a small model, and the sampling loop drops a sample
# from the batch when it ends, so larger batches are cheaper per comparison: on the default starter at the app's
# 80 new tokens, 35.6 ms per comparison in batches of 8, 29.9 in 16, 29.6 in 32 (bench/batch_size.py). 16, not 32:
# 32 gains little, and a batch of 32 takes long enough for the buffer to run low meanwhile.
MAX_BATCH = 16
FILL_MARGIN = 0.5  # a filled-up request batch ends by half the time left to its first deadline (the cost: a fit)
FIRST_BATCH = 4  # prompts in a batch before any batch was timed, when batches are bounded in time
RENEW_SECONDS = 1.0  # how often a refill under way renews the heartbeat (it lives handoff.ALIVE_SECONDS, 3 s)


class Pace:
    """The prefetcher's batch cost (app.lm.sampling.BatchCost, as the web's sampler fits its own) and the share of a
    core it got while sampling (recent batches weigh most), for the web's expected wait and its judgement whether the
    prefetcher is starved of CPU."""

    def __init__(self) -> None:
        from app.lm.sampling import BatchCost

        self._cost = BatchCost()
        self.cpu_share: float | None = None
        self.batch_until: float | None = None  # when the batch under way should end, by its cost (epoch seconds)
        self._cpu = time.process_time()

    @property
    def cost(self):
        """The fitted cost of a batch (a CostLine), None before any batch was timed."""
        return self._cost.fit() if self._cost.timed else None

    def start(self, prompts: int | None = None) -> None:
        """Mark the start of a batch (for its CPU share), of `prompts` if given (for its expected end)."""
        self._cpu = time.process_time()
        self.batch_until = self.until(prompts) if prompts else None

    def record(self, seconds: float, prompts: int) -> None:
        """Fold in one batch of `prompts` that took `seconds` of wall-clock time since start()."""
        self.batch_until = None
        self._cost.record(seconds, max(1, prompts))
        share = min(1.0, (time.process_time() - self._cpu) / seconds) if seconds > 0 else 1.0
        self.cpu_share = share if self.cpu_share is None else (self.cpu_share + share) / 2

    def until(self, prompts: int) -> float | None:
        """When a batch of `prompts` started now should end (epoch seconds), by its cost; None before any batch."""
        cost = self.cost
        return None if cost is None else time.time() + cost.seconds(prompts)


def fill_buffer(app: Flask, *, limit: int, between=None, pace: Pace | None = None, interrupt=None,
                batch_seconds: float | None = None) -> int:
    """Once a batch is missing (or half of `limit`, if less), fill the buffer to `limit` in batched calls; how many.
    `between()` runs before each batch (the hand-off answers waiting requests first); `pace` records each batch's
    time (and its expected end, Pace.batch_until); `interrupt()` true stops the batch under way, unstored,
    and the refill (a request waits: the caller serves it and refills after); `batch_seconds`: each batch takes
    only as many prompts as end in that time by its cost (refill_size)."""
    from app.lm.sampling import Interrupted, interruptible

    made = 0
    holder = get_holder(app)
    with app.app_context():
        loaded = holder.current()
        low_water = low_water_mark(limit)
        revision = current_revision_id()
        ready = ready_count(loaded.version_id, revision)
        # Once below the mark, fill to the limit (the last call may be a partial batch).
        while ready <= low_water or (made and ready < limit):
            if holder.serving() is not loaded:
                break
            try:
                size = refill_size(cost=pace.cost if pace is not None else None, seconds=batch_seconds)
                prompts = next_pool_prompts(limit=min(limit - ready, size))
            except PoolEmpty:
                break
            if between is not None:
                between()
            started = time.perf_counter()
            if pace is not None:
                pace.start(prompts=len(prompts))
            try:
                with interruptible(interrupt):
                    batch = generate_comparisons(loaded=loaded, inputs=[(p.text, p.id) for p in prompts],
                                                 user_id=None)
            except Interrupted:
                if pace is not None:
                    pace.batch_until = None
                db.session.rollback()
                break
            if pace is not None:
                pace.record(time.perf_counter() - started, len(prompts))
            db.session.commit()
            made += len(batch)
            if holder.serving() is not loaded:
                # The model was swapped while these generated, and the swap may already have retired the old
                # buffer: retire these stragglers too, so nobody is handed the old version's samples.
                retire_comparisons(keep_version_id=holder.serving().version_id)
            ready = ready_count(loaded.version_id, current_revision_id())
        db.session.remove()
    return made


def refill_size(*, cost, seconds: float | None) -> int:
    """Prompts in one refill batch: MAX_BATCH, or, with `seconds` and a batch's cost (a CostLine), as many as end
    within it (at least 1).

    With requests handed over, a request that finds the buffer empty stops the refill under way, which loses its
    whole batch (interrupt). A GPT-2-small batch of 16 takes about 15 s on 2 CPU cores, so under load every refill
    was stopped part-way and the buffer never filled (0 of 10 comparisons handed over, bench/load.py); batches that
    end within half a request's wait are short enough to finish, or to lose little when stopped."""
    if seconds is None:
        return MAX_BATCH
    if cost is None:
        return FIRST_BATCH  # a first batch short enough to time whatever the model (the starter's refills it)
    return max(1, min(MAX_BATCH, cost.prompts_within(seconds)))


def low_water_mark(limit: int) -> int:
    """The buffer's count at or below which it is refilled."""
    # Refilling at a low-water mark rather than after every claim lets each call generate a full batch: two
    # prompts in one call cost about as much as eight.
    return max(limit - MAX_BATCH, limit // 2)


def refill_inputs(app: Flask, loaded, *, task, settings: dict, room: int) -> tuple[list[tuple[str, int]], list[str]]:
    """Pool inputs to sample beside handed-over requests, up to `room`, when the buffer is at its low-water mark and
    the requests are sampled as a refill would be, with their prompts rendered under `task`; ([], []) otherwise.
    Inputs the model cannot take are left out."""
    from app.annotation.comparisons import request_settings
    from app.lm.sampling import InputTooLong, check_prompts

    limit = app.config["PREFETCH_SIZE"]
    if room <= 0 or limit <= 0 or settings != request_settings():
        return [], []
    if ready_count(loaded.version_id, task.id) > low_water_mark(limit):
        return [], []
    try:
        prompts = next_pool_prompts(limit=room)
    except PoolEmpty:
        return [], []
    inputs, model_prompts = [], []
    for p in prompts:
        model_prompt = loaded.format_prompt(p.text, system_prompt=task.system_prompt)
        try:
            check_prompts(loaded, [model_prompt], settings)
        except InputTooLong:
            continue
        inputs.append((p.text, p.id))
        model_prompts.append(model_prompt)
    return inputs, model_prompts


def fill_arena(app: Flask, *, limit: int, batch: int) -> int:
    """Top up each current pair's ready battles to `limit`, in batched calls, while the arena is in use."""
    made = 0
    with app.app_context():
        if limit > 0 and in_use():
            pairs = battle_pairs()
            retire_ready(pairs=pairs)
            ready = db.session.scalars(select(ArenaBattle).options(joinedload(ArenaBattle.candidates))
                                       .where(ArenaBattle.state == "ready")).unique().all()
            for pair in pairs:
                have = sum(1 for b in ready if battle_pair(b) == pair)
                if have > max(limit - batch, limit // 2):
                    continue
                try:
                    inputs = pool_inputs(limit=min(limit - have, batch))
                    battles = generate_battles(holder=get_holder(app), pair=pair, inputs=inputs, user_id=None)
                except (PoolEmpty, BadInput):
                    db.session.rollback()  # no pool, or a prompt or version that cannot be sampled: inline then
                    continue
                db.session.commit()
                made += len(battles)
        db.session.remove()
    return made


def run_prefetcher(app: Flask, *, poll_seconds: float = 0.1) -> None:
    """Follow the active version and keep the buffer topped up, until the process that started this one exits."""
    parent = os.getppid()
    try:
        get_holder(app).refresh(background=False)
    except Exception as exc:  # noqa: BLE001 - no model yet: keep polling, the web reports it per request
        log.warning("prefetcher: no model loaded at start: %s", exc)
    listen_for_changes(app)
    # Polling, not a wake-up per claim: one cheap count query every 0.1 s. Requests handed over (handoff.py) wake
    # it at once: it waits for them on their Redis list instead of sleeping.
    conn, pace = handoff_connection(app), Pace()

    names = keys(app)

    waiting = refill_interrupt(app, conn, names, pace=pace)

    def serve(wait: float = 0.0) -> None:
        if conn is not None:
            serve_requests(app, conn, pace=pace, wait=wait)
        elif wait:
            time.sleep(wait)

    while os.getppid() == parent:
        try:
            serve()
            fill_buffer(app, limit=app.config["PREFETCH_SIZE"], between=serve, pace=pace, interrupt=waiting,
                        batch_seconds=FILL_MARGIN * app.config["MAX_WAIT_SECONDS"] if conn is not None else None)
            serve()  # what stopped a refill, first
            fill_arena(app, limit=app.config["ARENA_PREFETCH_SIZE"], batch=MAX_BATCH)
            serve(wait=poll_seconds)
        except Exception as exc:  # noqa: BLE001 - a failed refill must not end the loop; requests generate inline
            log.warning("prefetch refill failed: %s; retrying in 2 s", exc)
            time.sleep(2)  # no model yet or the database away: do not log ten times a second


def handoff_connection(app: Flask):
    """A Redis client for the hand-off (app/versions/handoff.py), or None when requests sample in the web."""
    from app.versions.handoff import redis_for

    return redis_for(app) if app.config["SAMPLE_REQUESTS_IN"] == "prefetcher" else None


def refill_interrupt(app: Flask, conn, names: dict, *, pace: Pace):
    """The check a refill runs every 2 decoding steps: true when requests are handed over (the refill stops for
    them), unless it is within one more prompt's time of its end (they wait for it instead of losing its batch). It
    renews the heartbeat too, at most every RENEW_SECONDS: one refill batch of a real-size model on CPU outlasts the
    heartbeat (a GPT-2-small batch of 16 takes tens of seconds), and renewed only between batches it lapsed all
    through every refill, so requests, finding no live prefetcher, sampled in the web."""
    renew = at_most_every(RENEW_SECONDS, lambda: renew_heartbeat(app, conn, names, pace=pace))

    def waiting() -> bool:
        if conn is None:
            return False
        renew()
        return stops_refill(handoff_waiting(conn, names), pace=pace, now=time.time())

    return waiting


def at_most_every(seconds: float, action):
    """A function that runs action() when it last did so more than `seconds` ago (its first call runs it)."""
    last = [float("-inf")]  # however long the machine has been up (time.monotonic)

    def run() -> None:
        if time.monotonic() - last[0] > seconds:
            action()
            last[0] = time.monotonic()

    return run


def stops_refill(waiting: int, *, pace: Pace, now: float) -> bool:
    """Whether handed-over requests (`waiting` of them) stop the refill under way: unless, by its cost, it ends
    within the time one more prompt adds to a batch, less than their own batch would take (they are then answered
    from what it stores).

    Letting a refill run on while it would end before the requests' own batch (seconds a prompt x requests, the
    rule before the cost was fitted) cost the starter a
    tenth of its throughput at 20 annotators and its median click -> next went from 20-28 ms to 130-420 ms
    (bench/load.py, two runs each): requests waited for whole refills and then, most of them, for their batch."""
    if not waiting:
        return False
    cost = pace.cost
    if cost is None or pace.batch_until is None:
        return True
    return not 0.0 <= pace.batch_until - now <= cost.per  # past its expected end it overran: stop it


def renew_heartbeat(app: Flask, conn, names: dict, *, pace: Pace, busy_until: float | None = None) -> None:
    """Say, during a batch, that the prefetcher is alive: a refill takes requests (it stops for them, so it is not
    busy time), a request batch is busy until `busy_until`; a Redis error is left to the next renewal."""
    import redis

    from app.versions.handoff import heartbeat

    try:
        heartbeat(conn, names, version_id=get_holder(app).current().version_id, cost=pace.cost,
                  busy_until=busy_until, cpu_share=pace.cpu_share)
    except redis.RedisError:
        pass


def handoff_waiting(conn, names: dict) -> int:
    """How many requests wait on the hand-off's list (a Redis error counts as none: the refill goes on)."""
    import redis

    try:
        return conn.llen(names["queue"])
    except redis.RedisError:
        return 0


def fill_room(*, prompts: int, cost, deadline: float, now: float) -> int:
    """How many pool prompts a batch of `prompts` requests may be filled up with: up to MAX_BATCH in all, and only as
    many as end the batch, by its cost (a CostLine), by FILL_MARGIN of the time left to its first deadline (none
    before a batch was timed).

    Without the second bound a batch of a real-size model on CPU outlasted its requests: two GPT-2-small requests
    filled up to 16 took about 15 s against their 10 s (MAX_WAIT_SECONDS), so both answered 503 after waiting, and
    every request meanwhile was refused as busy (bench/load.py --model gpt2-small: 2 clicks a minute)."""
    if cost is None:
        return 0  # the first batches of a model of unknown cost: a GPT-2-small one filled to 16 took ~30 s
    return max(0, min(MAX_BATCH - prompts, cost.prompts_within(FILL_MARGIN * max(0.0, deadline - now)) - prompts))


def store_fill_up(app: Flask, loaded, *, task_id: int, inputs: list, model_prompts: list[str], results: list, seed: int,
                  offset: int, size: int) -> None:
    """Store the comparisons of a request batch's fill-up in the buffer (after its requests were answered)."""
    with app.app_context():
        try:
            task = db.session.get(TaskRevision, task_id)  # the revision its prompts were rendered for
            store_comparisons(loaded=loaded, task=task, inputs=inputs, model_prompts=model_prompts, results=results,
                              seed=seed, offset=offset, size=size, where="buffer", user_id=None)
            db.session.commit()
            if get_holder(app).serving() is not loaded:  # swapped meanwhile: as fill_buffer does
                retire_comparisons(keep_version_id=get_holder(app).serving().version_id)
        finally:
            db.session.remove()


def serve_requests(app: Flask, conn, *, pace: Pace, wait: float = 0.0) -> int:
    """Renew the heartbeat, then answer every request handed over (waiting up to `wait` s for the first); how many
    were answered with samples or "take one from the buffer". (A refill batch is not in the heartbeat's busy time:
    it stops for a request unless about to end, refill_interrupt.)"""
    import redis

    from app.lm.sampling import interruptible, sample_batch
    from app.versions.handoff import answer_requests, take_requests

    loaded, names = get_holder(app).current(), keys(app)

    def beat(busy_until: float | None) -> None:
        renew_heartbeat(app, conn, names, pace=pace, busy_until=busy_until)

    def renewing(busy_until: float | None):
        # The batch's check never stops it; it renews the heartbeat, which a request batch of a real-size model on
        # CPU outlasts as a refill does: it lapsed mid-batch, so requests sampled in the web beside it, on the cores
        # it needed (GPT-2-small shape: 0 of 7 handed over, every later request "no live prefetcher").
        # Past its expected end the batch is still busy: say so, or the web counts no wait for it.
        renew = at_most_every(RENEW_SECONDS, lambda: beat(max(busy_until or 0.0, time.time() + one_more())))
        return interruptible(lambda: renew() and False)

    def one_more() -> float:
        cost = pace.cost
        return cost.per if cost is not None else 0.0

    def sample(prompts: list[str], seed: int, settings: dict, deadline: float):
        # A batch of requests alone is small and costs up to twice as much a comparison as a refill's 16; while the
        # buffer is low the batch is filled up with pool prompts, whose comparisons go to the buffer, so a busy
        # prefetcher refills in the batches it samples anyway instead of in refills every request interrupts.
        # A lone request is not filled up: it would wait for a whole batch (measured mid-refill: 423 ms against
        # 49 ms alone, bench/handoff.py); two or more waiting at once is the load the fill-up is for.
        with app.app_context():
            task = current_task()
            room = fill_room(prompts=len(prompts), cost=pace.cost, deadline=deadline, now=time.time())
            pad, pad_prompts = (refill_inputs(app, loaded, task=task, settings=settings, room=room)
                                if len(prompts) >= 2 and room > 0 else ([], []))
            batch = prompts + pad_prompts
            started = time.perf_counter()
            pace.start()
            busy_until = pace.until(len(batch))
            beat(busy_until)
            with renewing(busy_until):
                results = sample_batch(loaded, model_prompts=batch, seed=seed, **settings)
            pace.record(time.perf_counter() - started, len(batch))
            store = partial(store_fill_up, app, loaded, task_id=task.id, inputs=pad, model_prompts=pad_prompts,
                            results=results[len(prompts):], seed=seed, offset=len(prompts), size=len(batch))
            db.session.remove()
        return results[:len(prompts)], len(batch), (store if pad else None)

    def ready() -> int:
        # Counted after the requests were taken off the queue: a database error here must not lose them (each
        # would wait for its 503), so it counts as an empty buffer and they are sampled.
        from sqlalchemy.exc import SQLAlchemyError

        from app.annotation.comparisons import claimable_count

        with app.app_context():
            try:
                return claimable_count(version_id=loaded.version_id)
            except SQLAlchemyError as exc:
                log.warning("prefetch: could not count the buffer: %s", exc)
                return 0
            finally:
                db.session.remove()

    served = 0
    try:
        beat(None)
        while requests := take_requests(conn, names, limit=MAX_BATCH, wait=wait if not served else 0.0):
            pool = any(r.get("pool") for r in requests)
            served += answer_requests(conn, names, requests, loaded=loaded, sample=sample, beat=beat,
                                      ready=ready() if pool else 0, cost=pace.cost)
            wait = 0.0
    except redis.RedisError as exc:  # Redis away: requests find no heartbeat and sample in their process
        log.warning("prefetch: the hand-off's Redis failed: %s", exc)
        time.sleep(wait)
    return served


def main() -> None:
    """Entry point of the prefetcher process (configured from the environment, like the web)."""
    from app import create_app
    from app.lm.device import lower_priority, set_threads

    logging.basicConfig(level=logging.INFO, format="[prefetch] %(levelname)s %(message)s")
    app = create_app()
    if app.config["PREFETCH_SIZE"] <= 0:
        return
    lower_priority()
    set_threads(app.config["PREFETCH_THREADS"])
    run_prefetcher(app)


if __name__ == "__main__":
    main()
