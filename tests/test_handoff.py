"""Requests handed to the prefetcher through real Redis: batched across requests, reproducible, bounded, and in
this process whenever the prefetcher cannot take them."""

import threading
import time

import pytest
import redis

from app.accounts.users import create_user
from app.annotation.comparisons import create_comparison, live_handoff, refuse_if_busy, request_settings
from app.lm.sampling import CostLine, sample_batch
from app.platform.exceptions import Busy
from app.platform.extensions import db
from app.versions import handoff
from app.versions.prefetch import Pace, serve_requests
from app.versions.serving import get_holder
from tests import services

pytestmark = pytest.mark.redis


@pytest.fixture
def conn(app):
    """The app on the test Redis, its hand-off keys empty."""
    app.config.update(REDIS_URL=services.redis_url(), SAMPLE_REQUESTS_IN="prefetcher", MAX_WAIT_SECONDS=2.0)
    client = redis.Redis.from_url(services.redis_url())
    names = handoff.keys(app)
    client.delete(names["queue"], names["alive"])
    yield client
    client.delete(names["queue"], names["alive"])


def prefetcher(app, stop: threading.Event) -> threading.Thread:
    """The prefetcher's serving loop (serve_requests, as run_prefetcher calls it), in a thread of this process."""
    def loop():
        pace = Pace()
        client = handoff.redis_for(app)
        while not stop.is_set():
            serve_requests(app, client, pace=pace, wait=0.05)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and handoff.prefetcher_state(handoff.redis_for(app), handoff.keys(app)) is None:
        time.sleep(0.02)
    return thread


def wait_queued(conn, queue: str, n: int) -> None:
    """Wait (20 s at most) until n requests wait on the hand-off's list; an asker that failed first fails the test."""
    deadline = time.monotonic() + 20
    while conn.llen(queue) < n:
        assert time.monotonic() < deadline, f"{conn.llen(queue)} of {n} requests were handed over"
        time.sleep(0.01)


def timed(per: float, fixed: float = 0.0) -> Pace:
    """A prefetcher's Pace whose batches were timed at `fixed` + `per` seconds a prompt (two sizes, so it fits that
    line exactly)."""
    pace = Pace()
    for prompts in (1, 2):
        pace.record(fixed + per * prompts, prompts)
    pace.cpu_share = None  # those batches were not run: no share of a core to judge by
    return pace


def serve_when_queued(app, conn, askers, *, per: float) -> int:
    """Start the asker threads, wait until each has handed its request over, serve them once with the prefetcher's
    batches timed at `per` s a prompt, wait for the askers; how many serve_requests answered."""
    threads = [threading.Thread(target=a) for a in askers]
    for t in threads:
        t.start()
    wait_queued(conn, handoff.keys(app)["queue"], len(askers))
    served = serve_requests(app, handoff.redis_for(app), pace=timed(per))
    for t in threads:
        t.join(20)
    return served


def typed(app, user_id: int, text: str):
    with app.app_context():
        comparison = create_comparison(user_id=user_id, input_text=text)
        db.session.commit()
        return comparison.id, comparison.seed, dict(comparison.settings), [c.text for c in comparison.candidates]


def test_requests_waiting_together_are_sampled_in_one_batch_that_reproduces_them(app, conn):
    """Three requests queued at once, from any process, are one batch under one seed: each reply says its place,
    and sample_batch on the batch's prompts with that seed gives each its own samples again."""
    with app.app_context():
        loaded = get_holder(app).current()
        settings = {"n": 3, "max_new_tokens": 12}
        names = handoff.keys(app)
        prompts = [loaded.format_prompt(t) for t in ("Send it now.", "Call me back.", "Fix the lamp.")]
        replies = {}

        def ask(i):
            replies[i] = handoff.sample_in_prefetcher(conn, names, {"cost": None}, version_id=loaded.version_id,
                                                      model_prompts=[prompts[i]], settings=settings, max_wait=20)

        askers = [threading.Thread(target=ask, args=(i,)) for i in range(3)]
        for t in askers:
            t.start()
        wait_queued(conn, names["queue"], 3)
        requests = handoff.take_requests(conn, names, limit=16)
        batches = []

        def sample(batch, seed, s, deadline):
            batches.append(len(batch))
            return sample_batch(loaded, model_prompts=batch, seed=seed, **s), len(batch), None

        assert handoff.answer_requests(conn, names, requests, loaded=loaded, sample=sample,
                                       beat=lambda _: None) == 3
        for t in askers:
            t.join(10)
    assert batches == [3]
    seeds = {r[1] for r in replies.values()}
    assert len(seeds) == 1 and sorted(r[2] for r in replies.values()) == [0, 1, 2]
    assert all(r[3] == 3 for r in replies.values())
    again = sample_batch(loaded, model_prompts=[q["prompts"][0] for q in requests], seed=seeds.pop(), **settings)
    for i, (results, _, offset, _) in replies.items():
        assert requests[offset]["prompts"] == [prompts[i]]
        assert [list(results[0][0]), list(results[0][1])] == [list(again[offset][0]), list(again[offset][1])]


def test_a_request_past_its_deadline_is_dropped_and_one_for_another_version_is_sent_back(app, conn):
    with app.app_context():
        loaded = get_holder(app).current()
        names = handoff.keys(app)
        for rid, version, deadline in (("late", loaded.version_id, time.time() - 1),
                                       ("other", loaded.version_id + 1, time.time() + 30)):
            conn.rpush(names["queue"], handoff.json.dumps({"id": rid, "version_id": version, "prompts": ["x"],
                                                           "settings": {}, "deadline": deadline}))
        calls = []
        served = handoff.answer_requests(conn, names, handoff.take_requests(conn, names, limit=16), loaded=loaded,
                                         sample=lambda *a: calls.append(a), beat=lambda _: None)
        assert served == 0 and calls == []
        assert conn.lpop(names["reply"] + "late") is None  # its caller has answered 503: nothing sampled
        assert "serves version" in conn.lpop(names["reply"] + "other").decode()


def test_while_the_buffer_is_low_a_request_batch_is_filled_up_with_pool_prompts_for_the_buffer(app, conn):
    """The prefetcher answers two requests waiting at once in a batch it fills with pool prompts while the buffer
    is at its low-water mark: each request gets its own samples (reproducible from the batch), the rest become ready
    comparisons of the same batch; a lone request, or any with the buffer above the mark, is sampled alone."""
    from app.annotation.prompts import import_prompts
    from app.tables import Comparison

    app.config["PREFETCH_SIZE"] = 8
    with app.app_context():
        import_prompts(texts=[f"Bring back the ladder {i}." for i in range(6)], source="test", max_chars=200)
        loaded = get_holder(app).current()
        names, client = handoff.keys(app), handoff.redis_for(app)
        settings = request_settings()
        prompt = loaded.format_prompt("Where is my coat?")
    replies = []

    def ask_and_serve(n: int):
        """n requests handed over at once from threads, and the prefetcher's serving loop once."""
        replies.clear()
        askers = [threading.Thread(target=lambda: replies.append(handoff.sample_in_prefetcher(
            client, names, {"cost": None}, version_id=loaded.version_id, model_prompts=[prompt], settings=settings,
            max_wait=20))) for _ in range(n)]
        for asker in askers:
            asker.start()
        wait_queued(conn, names["queue"], n)
        # The starter's cost, once timed (before it, a batch is never filled up: fill_room).
        assert serve_requests(app, client, pace=timed(0.05)) == n
        for asker in askers:
            asker.join(10)

    ask_and_serve(1)
    assert [r[3] for r in replies] == [1]  # alone: a lone request never waits for a filled-up batch
    ask_and_serve(2)
    (results, seed, offset, size) = min(replies, key=lambda r: r[2])
    assert offset == 0 and size == 8  # the two requests, then the pool's six
    with app.app_context():
        ready = db.session.query(Comparison).filter_by(state="ready").order_by(Comparison.id).all()
        assert len(ready) == 6 and {c.seed for c in ready} == {seed}
        assert {c.settings["sampled_in"] for c in ready} == {"buffer"} and ready[0].settings["batch_size"] == 8
        again = sample_batch(loaded, model_prompts=[prompt, prompt] + [c.model_prompt for c in ready], seed=seed,
                             **settings)
        assert [list(results[0][0]), list(results[0][1])] == [list(again[0][0]), list(again[0][1])]
        assert [c.settings["batch_index"] for c in ready] == list(range(2, 8))
        assert sorted(c.text for c in ready[2].candidates) == sorted(again[4][0])
    # The buffer above its low-water mark (6 > 4): two requests at once are sampled alone.
    ask_and_serve(2)
    assert [r[3] for r in replies] == [2, 2]


def test_requests_are_answered_before_their_batch_fill_up_is_stored(app, conn):
    """A batch's fill-up goes to the buffer after its requests have their replies: callers do not wait for it (with
    ACTIVE_CANDIDATES storing scores every candidate), and a failure to store it fails none of them."""
    import json
    from types import SimpleNamespace

    names = handoff.keys(app)
    requests = [{"id": f"fill{i}", "deadline": time.time() + 30, "prompts": ["p"], "version_id": 1, "settings": {}}
                for i in range(2)]
    conn.delete(*(names["reply"] + r["id"] for r in requests))
    stored = []

    def store():
        stored.append([conn.llen(names["reply"] + r["id"]) for r in requests])  # replies already there
        raise RuntimeError("the database is away")

    def sample(prompts, seed, settings, deadline):
        return [(["a", "b", "c"], ["a", "b", "a"])] * len(prompts), 5, store

    assert handoff.answer_requests(conn, names, requests, loaded=SimpleNamespace(version_id=1), sample=sample,
                                   beat=lambda _: None) == 2
    assert stored == [[1, 1]]
    for offset, r in enumerate(requests):
        body = json.loads(conn.lpop(names["reply"] + r["id"]))
        assert body["results"] == [[["a", "b", "c"], ["a", "b", "a"]]] and body["offset"] == offset
        assert body["size"] == 5 and "error" not in body


def test_a_typed_prompt_is_sampled_by_the_live_prefetcher_and_in_this_process_without_one(app, conn):
    """SAMPLE_REQUESTS_IN=prefetcher: with a live prefetcher the request's candidates come from it (the comparison
    says so); with none (no heartbeat), or with "web", the request samples in its own process as before."""
    with app.app_context():
        user, _, _ = create_user(name="ann", role="annotator", password="pw")
        uid = user.id
    assert typed(app, uid, "Where is my bike?")[2]["sampled_in"] == "web"  # no prefetcher yet
    stop = threading.Event()
    thread = prefetcher(app, stop)
    try:
        _, seed, settings, texts = typed(app, uid, "Where is my coat?")
        assert settings["sampled_in"] == "prefetcher" and settings["batch_size"] == 1
        with app.app_context():
            loaded = get_holder(app).current()
            keep = {k: settings[k] for k in ("n", "temperature", "top_p", "min_p", "max_new_tokens",
                                              "max_input_tokens", "dedup_tries")}
            again = sample_batch(loaded, model_prompts=[loaded.format_prompt("Where is my coat?")], seed=seed,
                                 **keep)[0][0]
        assert sorted(texts) == sorted(again)
        app.config["SAMPLE_REQUESTS_IN"] = "web"
        assert typed(app, uid, "Where is my hat?")[2]["sampled_in"] == "web"
    finally:
        stop.set()
        thread.join(10)


def test_a_request_the_prefetcher_never_takes_is_a_503_and_stores_nothing(app, conn):
    """A heartbeat with nobody serving (a prefetcher that hung): the request waits MAX_WAIT_SECONDS, then Busy with
    Retry-After, and no comparison is stored; the next request is refused at once by the busy check."""
    from app.tables import Comparison

    with app.app_context():
        user, _, _ = create_user(name="ann", role="annotator", password="pw")
        loaded = get_holder(app).current()
        names = handoff.keys(app)
        handoff.heartbeat(conn, names, version_id=loaded.version_id, cost=CostLine(0.0, 0.5))
        assert live_handoff(loaded.version_id) is not None
        assert live_handoff(loaded.version_id + 1) is None  # a heartbeat of another version is not trusted
        handoff.heartbeat(conn, names, version_id=loaded.version_id, cost=CostLine(0.0, 0.5), cpu_share=0.1)
        assert live_handoff(loaded.version_id) is None  # starved of CPU (a training run beside it): not handed
        handoff.heartbeat(conn, names, version_id=loaded.version_id, cost=CostLine(0.0, 0.5), cpu_share=0.9)
        started = time.monotonic()
        with pytest.raises(Busy) as busy:
            create_comparison(user_id=user.id, input_text="Where is my bike?")
        assert 1.5 < time.monotonic() - started < 10 and busy.value.retry_after >= 1
        db.session.rollback()
        assert db.session.query(Comparison).count() == 0
        # The request left its prompts queued; with 10 more, the expected wait (0.5 s a prompt) is past the bound.
        for _ in range(10):
            conn.rpush(names["queue"], "{}")
        handoff.heartbeat(conn, names, version_id=loaded.version_id, cost=CostLine(0.0, 0.5))
        with pytest.raises(Busy):
            refuse_if_busy()


@pytest.mark.slow
def test_under_gunicorn_requests_from_both_workers_are_sampled_by_the_prefetcher(tmp_path, starter_dir):
    """Real gunicorn (2 workers), its real prefetcher and real Redis: typed prompts sent at once from both workers
    are sampled in the prefetcher (no web process samples), and their answers are stored as usual."""
    import json as json_module
    from concurrent.futures import ThreadPoolExecutor

    from sqlalchemy import create_engine, text

    from harness.live import call, live_server, wait_for_buffer

    users = {f"ann{i}": "annotator" for i in range(4)}
    with live_server(tmp_path=tmp_path, starter_path=starter_dir["gpt2"], workers=2, users=users, prompts=20,
                     env_extra={"REDIS_URL": services.redis_url(), "PREFETCH_SIZE": "4",
                                "SAMPLE_REQUESTS_IN": "prefetcher",
                                # A busy test machine may starve the idle-priority prefetcher; that rule has its
                                # own test above: here the hand-off itself is under test.
                                "HANDOFF_MIN_CPU_SHARE": "0"}) as srv:
        assert wait_for_buffer(srv.db_url, 4, timeout=60) >= 4, srv.log_tail()
        with ThreadPoolExecutor(4) as pool:
            made = list(pool.map(lambda name: call(srv, "POST", "/api/comparisons", name,
                                                   {"prompt": f"Please tell {name} the time."}), users))
        assert [status for status, _ in made] == [201] * 4, made
        for (_, body), name in zip(made, users, strict=True):
            status, _ = call(srv, "POST", f"/api/comparisons/{body['id']}/answer", name,
                             {"candidate_id": body["candidates"][0]["id"]})
            assert status == 201
        engine = create_engine(srv.db_url)
        with engine.connect() as conn:
            rows = conn.execute(text("select settings from comparisons where prompt_id is null")).scalars().all()
            answers = conn.execute(text("select count(*) from preferences")).scalar_one()
        engine.dispose()
        places = [json_module.loads(s)["sampled_in"] for s in rows]
        assert places == ["prefetcher"] * 4 and answers == 4, (places, srv.log_tail())


def test_a_refill_stops_for_a_waiting_request_and_stores_nothing_of_its_batch(app, monkeypatch):
    """interrupt() true during a refill: the batch under way stops within INTERRUPT_STEPS steps (Interrupted), the
    refill stores none of it and returns; with the check false the same refill fills the buffer."""
    from app.annotation.prompts import import_prompts
    from app.lm.sampling import Interrupted, interruptible
    from app.tables import Comparison
    from app.versions.prefetch import fill_buffer

    with app.app_context():
        import_prompts(texts=[f"Bring back the ladder {i}." for i in range(8)], source="test", max_chars=200)
        loaded = get_holder(app).current()
        checks = []
        with pytest.raises(Interrupted), interruptible(lambda: checks.append(1) or True):
            sample_batch(loaded, model_prompts=[loaded.format_prompt("Send it.")], max_new_tokens=40)
        assert len(checks) == 1
    calls = []
    assert fill_buffer(app, limit=8, interrupt=lambda: calls.append(1) or True) == 0 and calls
    with app.app_context():
        assert db.session.query(Comparison).count() == 0
    assert fill_buffer(app, limit=8, interrupt=lambda: False) == 8


def test_threads_waiting_for_the_prefetcher_count_against_the_same_slots_as_sampling_here():
    """One bound on the web threads that may wait for a sampler, whichever sampler: a request waiting for the
    prefetcher takes a slot sample_coalesced also counts, so answers always keep their two threads."""
    from app.lm.sampling import check_room, holding_slot, slots_full

    with holding_slot(1):
        assert slots_full(1)
        with pytest.raises(Busy):
            check_room(1, max_wait=None, slots=1)  # sampling in this process: refused too
        with pytest.raises(Busy), holding_slot(1):
            pass
    assert not slots_full(1)


def test_a_refill_under_way_keeps_the_heartbeat_alive(app, conn, monkeypatch):
    """A refill batch can outlast the heartbeat (3 s; tens of seconds with a GPT-2-small model on CPU): its interrupt
    check renews it, at most every RENEW_SECONDS, so requests keep being handed over all through the refill; a
    waiting request still stops it."""
    from app.annotation.prompts import import_prompts
    from app.versions import prefetch

    monkeypatch.setattr(prefetch, "RENEW_SECONDS", 3600.0)
    names = handoff.keys(app)
    pace = Pace()
    check = prefetch.refill_interrupt(app, conn, names, pace=pace)
    assert check() is False
    first = handoff.prefetcher_state(conn, names)
    assert first is not None and first["busy_until"] is None  # a refill is not busy time: it stops for a request
    conn.delete(names["alive"])
    assert check() is False and handoff.prefetcher_state(conn, names) is None  # renewed at most every RENEW_SECONDS

    monkeypatch.setattr(prefetch, "RENEW_SECONDS", 0.0)
    check = prefetch.refill_interrupt(app, conn, names, pace=pace)  # its rate is fixed when it is made
    with app.app_context():
        import_prompts(texts=[f"Bring back the ladder {i}." for i in range(8)], source="test", max_chars=200)
    seen = []

    def check_and_expire():
        waiting = check()
        seen.append(handoff.prefetcher_state(conn, names) is not None)
        conn.delete(names["alive"])  # as if its 3 s ran out: only the next check's renewal brings it back
        return waiting

    assert prefetch.fill_buffer(app, limit=8, interrupt=check_and_expire) == 8
    assert len(seen) > 3 and all(seen)
    conn.rpush(names["queue"], "a request")
    assert check() is True
    assert prefetch.refill_interrupt(app, None, names, pace=pace)() is False  # no Redis: nothing to stop for


def test_a_request_batch_under_way_keeps_the_heartbeat_alive_and_busy(app, conn, monkeypatch):
    """A request batch can outlast the heartbeat too (a GPT-2-small one on CPU: 0 of 7 requests handed over while
    it lapsed): sampling it renews the heartbeat, with the batch's expected end as busy time, and still answers."""
    from app.versions import prefetch

    monkeypatch.setattr(prefetch, "RENEW_SECONDS", 0.0)
    renewals = []
    real = prefetch.renew_heartbeat
    names = handoff.keys(app)
    alive = []

    def renew(*a, **kw):
        real(*a, **kw)
        renewals.append(kw.get("busy_until"))
        alive.append(handoff.prefetcher_state(conn, names))

    monkeypatch.setattr(prefetch, "renew_heartbeat", renew)
    with app.app_context():
        loaded = get_holder(app).current()
        prompt, settings = loaded.format_prompt("Where is my coat?"), request_settings() | {"max_new_tokens": 24}
    names, client = handoff.keys(app), handoff.redis_for(app)
    replies = []
    started = time.time()
    assert serve_when_queued(app, conn, [lambda: replies.append(handoff.sample_in_prefetcher(
        client, names, {"cost": None}, version_id=loaded.version_id, model_prompts=[prompt], settings=settings,
        max_wait=20))], per=0.05) == 1
    assert len(replies) == 1 and len(replies[0][0]) == 1
    assert renewals[0] is None and renewals[-1] is None  # before and after the batch: alive, not busy
    assert len(renewals) >= 3 and all(until is not None and until > started for until in renewals[1:-1])
    assert all(state is not None for state in alive)  # the key really is there after each renewal


def test_a_request_batch_is_filled_up_only_as_far_as_it_ends_well_before_its_first_deadline():
    """With a slow model (a GPT-2-small shape on CPU: about 1 s a prompt) two requests with 10 s left get a batch
    of 5, not 16: by its cost it ends in half their time; with the starter's cost the whole batch; before any batch
    was timed, none (a model of unknown cost); never a negative room. A fixed part of the cost counts once: at
    1.8 s a batch plus 1.1 s a prompt (GPT-2-small on 2 cores), 2 prompts fit in 5 s, not 4."""
    from app.versions.prefetch import MAX_BATCH, fill_room

    assert fill_room(prompts=2, cost=CostLine(0.0, 1.0), deadline=110.0, now=100.0) == 3
    assert fill_room(prompts=2, cost=CostLine(0.0, 0.07), deadline=110.0, now=100.0) == MAX_BATCH - 2
    assert fill_room(prompts=2, cost=None, deadline=110.0, now=100.0) == 0
    assert fill_room(prompts=4, cost=CostLine(0.0, 3.0), deadline=110.0, now=100.0) == 0
    assert fill_room(prompts=2, cost=CostLine(0.0, 1.0), deadline=90.0, now=100.0) == 0
    assert fill_room(prompts=1, cost=CostLine(1.8, 1.1), deadline=110.0, now=100.0) == 1
    assert fill_room(prompts=1, cost=CostLine(0.0, 1.1), deadline=110.0, now=100.0) == 3


def test_with_requests_handed_over_a_refill_batch_ends_within_its_time_by_its_cost():
    """A GPT-2-small shape on CPU (about 1 s a prompt) refills in batches of 5 when each must end within 5 s, 2 where
    a batch also costs 2.5 s whatever its size; the starter (0.03 s) in whole batches; before any batch was timed a
    short first batch; without the bound, whole batches; never fewer than 1."""
    from app.versions.prefetch import FIRST_BATCH, MAX_BATCH, refill_size

    assert refill_size(cost=CostLine(0.0, 1.0), seconds=5.0) == 5
    assert refill_size(cost=CostLine(2.5, 1.0), seconds=5.0) == 2
    assert refill_size(cost=CostLine(0.0, 0.03), seconds=5.0) == MAX_BATCH
    assert refill_size(cost=None, seconds=5.0) == FIRST_BATCH < MAX_BATCH
    assert refill_size(cost=CostLine(0.0, 1.0), seconds=None) == MAX_BATCH
    assert refill_size(cost=CostLine(0.0, 30.0), seconds=5.0) == 1
    assert refill_size(cost=CostLine(6.0, 1.0), seconds=5.0) == 1


def test_requests_stop_a_refill_unless_it_is_within_one_prompts_time_of_its_end():
    """At 1 s a prompt (and 2 s a batch) a refill with 4 s or 1.5 s left stops for two waiting requests; with 0.5 s
    left it goes on (they take its comparisons from the buffer); past its expected end it stops; nobody waiting, it
    goes on; before any batch was timed, it stops."""
    from app.versions.prefetch import stops_refill

    pace = timed(1.0, fixed=2.0)
    pace.batch_until = 104.0
    assert stops_refill(2, pace=pace, now=100.0)
    assert stops_refill(2, pace=pace, now=102.5)
    assert not stops_refill(2, pace=pace, now=103.5)
    assert stops_refill(2, pace=pace, now=105.0)  # past its expected end: it overran (starved of CPU), so it stops
    assert not stops_refill(0, pace=pace, now=100.0)
    pace = Pace()
    pace.batch_until = 104.0
    assert stops_refill(1, pace=pace, now=102.5)


def test_a_refill_records_its_expected_end_while_it_runs_and_clears_it_when_it_ends(app):
    """Pace.batch_until is set from its cost for the refill batch under way (the interrupt check reads it) and
    cleared when the batch ends, stopped or not."""
    from app.annotation.prompts import import_prompts
    from app.versions.prefetch import fill_buffer

    with app.app_context():
        import_prompts(texts=[f"Bring back the ladder {i}." for i in range(8)], source="test", max_chars=200)
    pace, seen = timed(0.5), []

    def look():
        seen.append(pace.batch_until)
        return False

    started = time.time()
    assert fill_buffer(app, limit=4, pace=pace, interrupt=look, batch_seconds=1.0) == 4
    assert seen and all(until is not None and started < until for until in seen)
    assert pace.batch_until is None


def test_a_pool_request_that_waited_for_a_refill_takes_one_of_its_comparisons(app, conn):
    """A pool request handed over while a refill ran on (stops_refill: it was near its end): the refill stores its
    batch, the prefetcher answers "take one from the buffer", and the request is given a comparison of that batch,
    not a fresh sample; a typed request waiting beside it is sampled for itself. With the buffer empty by then
    (others took it), the pool request is a 503 with Retry-After 1 s, and nothing is stored."""
    from app.annotation.prompts import import_prompts
    from app.tables import Comparison
    from app.versions.prefetch import fill_buffer

    app.config["PREFETCH_SIZE"] = 4
    with app.app_context():
        import_prompts(texts=[f"Bring back the ladder {i}." for i in range(12)], source="test", max_chars=200)
        ann, _, _ = create_user(name="ann", role="annotator", password="pw")
        bob, _, _ = create_user(name="bob", role="annotator", password="pw")
        ids = ann.id, bob.id
        loaded = get_holder(app).current()
    names, client = handoff.keys(app), handoff.redis_for(app)
    handoff.heartbeat(conn, names, version_id=loaded.version_id, cost=CostLine(0.0, 0.05))
    got = {}

    def pool_request():
        with app.app_context():
            comparison = create_comparison(user_id=ids[0])
            got["pool"] = (comparison.id, comparison.settings["sampled_in"], comparison.state)

    def typed_request():
        got["typed"] = typed(app, ids[1], "Where is my coat?")

    threads = [threading.Thread(target=a) for a in (pool_request, typed_request)]
    for t in threads:
        t.start()
    wait_queued(conn, names["queue"], 2)
    assert fill_buffer(app, limit=4) == 4  # the refill they waited for ends (stops_refill is tested on its own)
    assert serve_requests(app, client, pace=timed(0.05)) == 2
    for t in threads:
        t.join(20)
    with app.app_context():
        batch = {c.id: c for c in db.session.query(Comparison).filter(Comparison.settings["sampled_in"].as_string()
                                                                          == "buffer")}
        assert len(batch) == 4 and got["pool"][0] in batch and got["pool"][1:] == ("buffer", "assigned")
        assert got["typed"][2]["sampled_in"] == "prefetcher"
        # ann's comparison set aside (else asking again hands it back), and the buffer emptied, as others would
        db.session.query(Comparison).filter(Comparison.state == "ready").update({"state": "stale"})
        db.session.query(Comparison).filter(Comparison.id == got["pool"][0]).update({"state": "stale"})
        db.session.commit()
        stored = db.session.query(Comparison).count()
    del got["pool"]

    def pool_request_refused():
        with app.app_context():
            try:
                create_comparison(user_id=ids[0])
            except Busy as exc:
                got["busy"] = exc.retry_after
                db.session.rollback()

    thread = threading.Thread(target=pool_request_refused)
    thread.start()
    wait_queued(conn, names["queue"], 1)
    # The prefetcher says "from the buffer" (it counted one a moment ago), but the row is gone when the request looks.
    [raw] = conn.lpop(names["queue"], 1)
    handoff.reply(conn, names, __import__("json").loads(raw), {"buffered": True})
    thread.join(20)
    assert got == {"busy": 1, "typed": got["typed"]}  # a 503 at once, not a second full wait
    with app.app_context():
        assert db.session.query(Comparison).count() == stored


def test_a_batch_takes_only_the_requests_it_can_answer_before_their_deadlines():
    """At 1 s a prompt, of requests with 2, 3, 6 and 9 s left a batch of the latest three ends in 3 s, in time for
    each of them, and the 2 s one is refused; at 4 s a prompt one fits; with nothing timed yet, all; none fit at 20;
    with 2 s a batch besides, two (the fixed part counts once a batch)."""
    from app.versions.handoff import within_deadlines

    requests = [{"id": i, "deadline": 100.0 + left, "prompts": ["p"]} for i, left in enumerate([2, 3, 6, 9])]
    keep, late = within_deadlines(requests, cost=CostLine(0.0, 1.0), now=100.0)
    assert [r["id"] for r in keep] == [1, 2, 3] and [r["id"] for r in late] == [0]
    keep, late = within_deadlines(requests, cost=CostLine(0.0, 4.0), now=100.0)
    assert [r["id"] for r in keep] == [3] and [r["id"] for r in late] == [0, 1, 2]  # two would end at 8 s > 6 s
    assert within_deadlines(requests, cost=None, now=100.0) == (requests, [])
    assert within_deadlines(requests, cost=CostLine(0.0, 20.0), now=100.0) == ([], requests)
    keep, late = within_deadlines(requests, cost=CostLine(2.0, 1.0), now=100.0)
    assert [r["id"] for r in keep] == [2, 3] and [r["id"] for r in late] == [0, 1]  # three would end at 5 s > 3 s


def test_the_prefetchers_cost_is_fixed_plus_per_prompt_and_the_web_reads_it_from_the_heartbeat(app, conn):
    """The prefetcher fits its batches as the web's sampler does (BatchCost): timed at 2 s a batch plus 0.5 s a
    prompt, it expects a batch of 4 to take 4 s, and the web, from its heartbeat, expects 3 prompts behind 2 queued
    requests and 1.5 s of the batch under way to wait 1.5 + 2 + 0.5 x 5 s; before any batch, no expectation."""
    from app.versions import handoff

    pace = timed(0.5, fixed=2.0)
    assert pace.cost == pytest.approx((2.0, 0.5))
    assert pace.until(4) == pytest.approx(time.time() + 4.0, abs=0.5)
    assert Pace().cost is None and Pace().until(4) is None
    names = handoff.keys(app)
    conn.delete(names["queue"])
    conn.rpush(names["queue"], "{}", "{}")
    handoff.heartbeat(conn, names, version_id=1, cost=pace.cost, busy_until=time.time() + 1.5)
    state = handoff.prefetcher_state(conn, names)
    assert handoff.expected_wait(conn, names, state, 3) == pytest.approx(1.5 + 2.0 + 0.5 * 5, abs=0.3)
    handoff.heartbeat(conn, names, version_id=1, cost=None)
    assert handoff.expected_wait(conn, names, handoff.prefetcher_state(conn, names), 3) is None
    conn.delete(names["queue"])


def test_a_second_settings_group_is_timed_from_the_end_of_the_first(app, conn):
    """Two groups of requests (two sampling settings) are sampled one after the other: at 1 s a prompt, the second
    group's request with 3 s left fits alone (it would end at 1 s) but not behind the first group's 3 prompts (4 s):
    it is told "busy" for the time both take, and the first group is kept whole."""
    import json

    from app.versions import handoff

    names = handoff.keys(app)
    first = [{"id": f"a{i}", "deadline": 1e12, "prompts": ["p"], "version_id": 1, "settings": {"t": 1}}
             for i in range(3)]
    now = __import__("time").time()
    second = {"id": "b0", "deadline": now + 3.0, "prompts": ["p"], "version_id": 1, "settings": {"t": 2}}
    conn.delete(names["reply"] + "b0")
    groups, buffered = handoff.sort_requests(conn, names, first + [second], version_id=1, ready=0,
                                             cost=CostLine(0.0, 1.0))
    assert groups == [first] and buffered == 0
    assert json.loads(conn.lpop(names["reply"] + "b0")) == {"busy": 4}
    assert handoff.within_deadlines([second], cost=CostLine(0.0, 1.0), now=now) == ([second], [])  # alone it would fit


def test_a_request_refused_by_the_prefetcher_for_its_deadline_is_a_503_with_retry_after(app, conn):
    """The prefetcher, at 30 s a prompt (a stalled model), cannot answer a request with 2 s left: it replies "busy"
    at once and the request raises Busy with Retry-After, well before its own 2 s are up; nothing is stored."""
    from app.tables import Comparison

    with app.app_context():
        user, _, _ = create_user(name="ann", role="annotator", password="pw")
        uid = user.id
    names = handoff.keys(app)
    with app.app_context():
        handoff.heartbeat(conn, names, version_id=get_holder(app).current().version_id, cost=CostLine(0.0, 0.01))
    outcome = {}

    def ask():
        with app.app_context():
            try:
                create_comparison(user_id=uid, input_text="Where is my coat?")
            except Busy as exc:
                outcome["busy"], outcome["at"] = exc.retry_after, time.monotonic()
                db.session.rollback()

    started = time.monotonic()
    assert serve_when_queued(app, conn, [ask], per=30.0) == 0
    assert outcome["busy"] >= 30 and outcome["at"] - started < 1.0
    with app.app_context():
        assert db.session.query(Comparison).count() == 0
