"""Requests that find the buffer empty, sampled by the prefetcher: handed over through Redis, answered in batches.

With SAMPLE_REQUESTS_IN=prefetcher a web process never samples while the prefetcher is alive: a request pushes
its prompts onto one Redis list and waits (blocked on its own reply key, holding no GIL and no CPU) for the
prefetcher, which takes every request waiting there, from every web process, into one batch ahead of any refill.
So an answer never waits behind sampling in its process (issue 28), and requests that arrive together across
processes share one batch. The prefetcher runs on idle CPU only, so the web's work always comes first.

Without a live prefetcher (none started, or its heartbeat older than ALIVE_SECONDS) or without Redis, requests
sample in their own process as before (app.lm.sampling.sample_coalesced). Written here, not with RQ: an RQ job
is a fork or a process per job, and the point is one resident model answering many requests in one batch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import random
import time
import uuid

from app.platform.exceptions import Busy

log = logging.getLogger(__name__)

# Key names end in the deployment's database (keys(app)): two deployments (or test apps) sharing one Redis never
# take each other's requests or trust each other's heartbeat.
QUEUE = "prefloop:sample:requests:"
REPLY = "prefloop:sample:reply:"
ALIVE = "prefloop:sample:alive:"
ALIVE_SECONDS = 3  # the heartbeat's lifetime: the prefetcher renews it at least every poll (0.1 s) or refill batch
REPLY_SECONDS = 60  # a reply nobody collects (its request gave up) expires


def redis_for(app):
    """This process's client for the hand-off, or None without REDIS_URL: its reads may block up to
    MAX_WAIT_SECONDS (the web's client gives up after 3 s, right for its quick calls, too short for these)."""
    url = app.config.get("REDIS_URL")
    if not url:
        return None
    client = app.extensions.get("prefloop_handoff_redis")
    if client is None:
        import redis

        client = redis.Redis.from_url(url, socket_connect_timeout=1,
                                      socket_timeout=app.config["MAX_WAIT_SECONDS"] + 5)
        app.extensions["prefloop_handoff_redis"] = client
    return client


class NotServed(RuntimeError):
    """The prefetcher could not sample this request (it serves another version now): sample in this process."""


class FromBuffer(RuntimeError):
    """The prefetcher answered a pool request with "take one from the buffer": a batch stored comparisons while it
    waited (a refill it did not stop, or another request batch's fill-up), which serve it as well as its own
    prompt's would (any pool prompt does)."""


def keys(app) -> dict:
    """This deployment's key names: its queue, heartbeat and reply prefix."""
    tag = hashlib.sha256(str(app.config.get("SQLALCHEMY_DATABASE_URI")).encode()).hexdigest()[:12]
    return {"queue": QUEUE + tag, "alive": ALIVE + tag, "reply": REPLY + tag + ":"}


def prefetcher_state(conn, names: dict) -> dict | None:
    """The live prefetcher's heartbeat ({version_id, cost, busy_until, cpu_share}), or None when there is none."""
    raw = conn.get(names["alive"])
    return json.loads(raw) if raw else None


def expected_wait(conn, names: dict, state: dict, prompts: int) -> float | None:
    """Seconds until `prompts` more would be sampled: the batch under way, then every waiting request's prompts
    (one each, as requests for comparisons are) and these, in one batch by its cost; None before the prefetcher has
    timed a batch."""
    cost = heartbeat_cost(state)
    if cost is None:
        return None
    busy_until = state.get("busy_until") or 0.0
    return max(0.0, busy_until - time.time()) + cost.seconds(conn.llen(names["queue"]) + prompts)


def heartbeat_cost(state: dict):
    """The prefetcher's batch cost from its heartbeat (a CostLine), None before it has timed a batch."""
    from app.lm.sampling import CostLine

    cost = state.get("cost")
    return None if cost is None else CostLine(*cost)


def check_room(conn, names: dict, state: dict, prompts: int, *, max_wait: float | None,
               slots: int | None) -> None:
    """Raise Busy (503 with Retry-After) when these prompts would wait past max_wait for the prefetcher, or every
    sampling slot of this process (threads that may wait for a sampler, app.lm.sampling's count) is taken."""
    from app.lm.sampling import slots_full

    wait = expected_wait(conn, names, state, prompts)
    if slots_full(slots) or (max_wait is not None and wait is not None and wait > max_wait):
        retry = max(1, math.ceil(wait if wait is not None else 1))
        raise Busy(f"The model is busy: about {retry} s of sampling is waiting. Try again in {retry} s.",
                   retry_after=retry)


def sample_in_prefetcher(conn, names: dict, state: dict, *, version_id: int, model_prompts: list[str],
                         settings: dict, max_wait: float | None, slots: int | None = None, pool: bool = False
                         ) -> tuple[list[tuple[list[str], list[str]]], int, int, int]:
    """Hand the prompts to the prefetcher and wait for its batch; (results, seed, offset, size) as
    sample_coalesced returns them. Busy when it would wait, or has waited, past max_wait, or finds no slot;
    NotServed when the prefetcher serves another version than this request's, or its sampling failed;
    FromBuffer, for a `pool` request (any ready comparison would do), when a refill has just filled the buffer."""
    check_room(conn, names, state, len(model_prompts), max_wait=max_wait, slots=slots)
    request_id = uuid.uuid4().hex
    deadline = time.time() + (max_wait if max_wait is not None else 3600.0)
    from app.lm.sampling import holding_slot

    with holding_slot(slots):
        conn.rpush(names["queue"], json.dumps({"id": request_id, "version_id": version_id, "prompts": model_prompts,
                                               "settings": settings, "deadline": deadline, "pool": pool}))
        got = conn.blpop([names["reply"] + request_id], timeout=max(1, math.ceil(deadline - time.time())))
    if got is None:
        # Past its deadline the prefetcher drops the request unsampled, so nothing of it is stored anywhere.
        retry = max(1, math.ceil(max_wait or 1))
        raise Busy(f"The model is busy: this request waited {retry} s for it. Try again in {retry} s.",
                   retry_after=retry)
    answer = json.loads(got[1])
    if "error" in answer:
        raise NotServed(answer["error"])
    if answer.get("buffered"):
        raise FromBuffer("the buffer has comparisons for this request")
    if "busy" in answer:  # the prefetcher's batch could not have ended by this request's deadline
        retry = max(1, int(answer["busy"]))
        raise Busy(f"The model is busy: about {retry} s of sampling is waiting. Try again in {retry} s.",
                   retry_after=retry)
    results = [(texts, raw) for texts, raw in answer["results"]]
    return results, answer["seed"], answer["offset"], answer["size"]


def take_requests(conn, names: dict, *, limit: int, wait: float = 0.0) -> list[dict]:
    """Up to `limit` waiting requests, oldest first; with `wait`, block that long for the first one."""
    if wait > 0:
        first = conn.blpop([names["queue"]], timeout=wait)
        if first is None:
            return []
        rest = conn.lpop(names["queue"], limit - 1) if limit > 1 else None
        return [json.loads(first[1]), *(json.loads(r) for r in rest or ())]
    return [json.loads(r) for r in conn.lpop(names["queue"], limit) or ()]


def answer_requests(conn, names: dict, requests: list[dict], *, loaded, sample, beat, ready: int = 0,
                    cost=None) -> int:
    """Sample the live requests for `loaded`'s version in one batch per sampling setting, reply to each; how many
    were answered with comparisons. Those that need no sampling are answered first (sort_requests).
    `sample(model_prompts, seed, settings, deadline)` samples them (deadline: the group's first, epoch seconds),
    first in a batch it may fill up with refill prompts, and returns (their results, the batch's size, what to do
    once they are answered: store the fill-up's comparisons, or None); `beat(busy_until)` renews the heartbeat with
    the batch's expected end; `cost` (a CostLine) is what a batch costs, None before one was timed."""
    groups, answered = sort_requests(conn, names, requests, version_id=loaded.version_id, ready=ready, cost=cost)
    for group in groups:
        prompts = [p for r in group for p in r["prompts"]]
        seed = random.SystemRandom().randrange(2**31)
        try:
            results, size, then = sample(prompts, seed, group[0]["settings"], min(r["deadline"] for r in group))
        except Exception as exc:  # noqa: BLE001 - each caller gets the error and raises it as its own
            for r in group:
                reply(conn, names, r, {"error": f"sampling failed: {exc.__class__.__name__}: {exc}"})
            continue
        offset = 0
        for r in group:
            mine = results[offset:offset + len(r["prompts"])]
            reply(conn, names, r, {"results": mine, "seed": seed, "offset": offset, "size": size})
            offset += len(r["prompts"])
        answered += len(group)
        if then is not None:
            # After the replies: the callers do not wait for the fill-up to be stored (with ACTIVE_CANDIDATES that
            # scores every candidate under two models), and a failure to store it fails none of them. The heartbeat
            # keeps the batch's busy time until it is stored.
            try:
                then()
            except Exception:  # noqa: BLE001 - the fill-up is lost, as an interrupted refill is; the loop goes on
                log.exception("prefetch: storing a fill-up's comparisons failed")
        beat(None)
    return answered


def sort_requests(conn, names: dict, requests: list[dict], *, version_id: int, ready: int, cost
                  ) -> tuple[list[list[dict]], int]:
    """(groups to sample, one per sampling setting; how many pool requests were sent to the buffer). Answered here:
    a request past its deadline is dropped (its caller has answered 503); one for another version is "not served"
    (its caller samples in its own process); up to `ready` pool requests (the buffer's count now), oldest first,
    "take one from the buffer"; with `cost` (a CostLine), those a batch could not end in time for "busy"
    (within_deadlines), each group counted from the end of the groups kept before it."""
    now, buffered = time.time(), 0
    groups: dict[str, list[dict]] = {}
    for r in (r for r in requests if r["deadline"] > now):
        if r["version_id"] != version_id:
            reply(conn, names, r, {"error": f"the prefetcher serves version {version_id}, not {r['version_id']}"})
        elif r.get("pool") and buffered < ready:
            # A batch stored comparisons while it waited (a refill it did not stop, or a fill-up).
            reply(conn, names, r, {"buffered": True})
            buffered += 1
        else:
            groups.setdefault(json.dumps(r["settings"], sort_keys=True), []).append(r)
    kept, ahead = [], 0.0
    for group in groups.values():
        # Groups are sampled one after another: each starts, by its cost, when those kept before it end.
        keep, late = within_deadlines(group, cost=cost, now=now + ahead)
        for r in late:
            reply(conn, names, r, {"busy": math.ceil(ahead + cost.seconds(sum(len(g["prompts"]) for g in group)))})
        if keep:
            kept.append(keep)
            ahead += cost.seconds(sum(len(r["prompts"]) for r in keep)) if cost is not None else 0.0
    return kept, buffered


def within_deadlines(requests: list[dict], *, cost, now: float) -> tuple[list[dict], list[dict]]:
    """(those to sample, those to refuse): the most requests whose batch, by its cost (a CostLine), ends before each
    one's deadline, the latest deadlines first; all of them before a batch was timed (cost None).

    Sampling a request past its deadline is lost work: its caller has answered 503 and the reply expires unread.
    Under 4x overload with a GPT-2-small shape a third of the prompts sampled were (batches of 8-9 that ended
    after their first request's deadline, bench/load.py); refused at once, each caller answers 503 now instead
    of after waiting MAX_WAIT_SECONDS, and the batch is only as large as it can serve."""
    if cost is None:
        return requests, []
    ranked = sorted(requests, key=lambda r: r["deadline"], reverse=True)
    fits, prompts = 0, 0
    for k, r in enumerate(ranked, start=1):
        prompts += len(r["prompts"])
        if r["deadline"] >= now + cost.seconds(prompts):
            fits = k
    keep = {id(r) for r in ranked[:fits]}
    return [r for r in requests if id(r) in keep], [r for r in requests if id(r) not in keep]


def reply(conn, names: dict, request: dict, body: dict) -> None:
    """Push one request's answer onto its reply key, which expires if nobody reads it."""
    key = names["reply"] + request["id"]
    with conn.pipeline() as pipe:
        pipe.rpush(key, json.dumps(body))
        pipe.expire(key, REPLY_SECONDS)
        pipe.execute()


def heartbeat(conn, names: dict, *, version_id: int, cost=None, busy_until: float | None = None,
              cpu_share: float | None = None) -> None:
    """Say the prefetcher is alive, which version it serves, what its batches cost (a CostLine, None before one was
    timed), when its batch ends and the share of a core its recent batches got."""
    conn.set(names["alive"], json.dumps({"version_id": version_id, "cost": None if cost is None else list(cost),
                                         "busy_until": busy_until, "cpu_share": cpu_share}), ex=ALIVE_SECONDS)


def starved(state: dict, *, min_share: float) -> bool:
    """Whether the prefetcher gets too little CPU to be handed requests (below min_share of a core while sampling):
    it runs only on CPU nothing else wants (SCHED_IDLE), so beside a training run on the same cores it can get next
    to none, and requests would wait for it until their 503; they sample in their own process then, at the web's
    priority, as they did before."""
    return state.get("cpu_share") is not None and state["cpu_share"] < min_share
