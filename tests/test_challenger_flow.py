"""The challenger flow on real gunicorn and a real worker, on both backends: the gate passes, the version becomes
the challenger (the champion keeps serving), the worker samples both on the probes, battles are champion against
challenger and blind, votes decide (promote, or retire), audited. Then the pages in a real browser."""

from __future__ import annotations

import json
import re
import time

import pytest

from harness.live import ROOT, call, live_server, live_worker
from tests import services
from tests.test_auth import LiveClient
from tests.test_browser import browser, log_in  # noqa: F401 - the shared chromium fixture
from tests.test_browser_loop import new_page
from tests.test_worker import USERS, click_shortest, finished, redis_env, wait_run  # noqa: F401 - fixture

pytestmark = [pytest.mark.slow, pytest.mark.redis]
# As in tests/test_browser_loop.py: these tests are about the flow after the gate, so its bounds are wide enough for
# any healthy tiny model (the gate has its own tests).
LENIENT_GATE = {"GATE_MIN_DISTINCT": "1.0", "GATE_MAX_DISTINCT_DROP_SE": "1000", "GATE_MAX_LENGTH_RATIO": "10",
                "GATE_MAX_FLUENCY_DROP": "5"}
SIDE_BY_SIDE_SCREENSHOT = ROOT / "docs" / "screenshots" / "side-by-side.png"
CHALLENGER_SCREENSHOT = ROOT / "docs" / "screenshots" / "challenger.png"


def train_challenger(srv) -> int:
    """40 clicks, a run, and the challenger it makes (the champion, version 1, still serving)."""
    click_shortest(srv, n=40)
    status, run = call(srv, "POST", "/api/training-runs", "adm", {"epochs": 4})
    assert status == 202, run
    run = wait_run(srv, run["id"], until=finished)
    assert run["status"] == "succeeded", run["error"] or run["metrics"].get("reasons")
    assert run["metrics"]["challenger"] and not run["metrics"]["activated"]
    return run["version_id"]


def wait_compared(srv, a: int, b: int, timeout: float = 120) -> dict:
    """GET the comparison until both versions' probe samples are made (409 until then)."""
    deadline = time.monotonic() + timeout
    while True:
        status, body = call(srv, "GET", f"/api/model-versions/compare?a={a}&b={b}", "opr")
        if status == 200:
            return body
        assert status == 409 and time.monotonic() < deadline, body
        time.sleep(0.5)


def roles(srv) -> dict[int, str | None]:
    return {v["id"]: v["role"] for v in call(srv, "GET", "/api/model-versions", "opr")[1]["versions"]}


@pytest.mark.parametrize(("backend", "vote_for", "outcome"), [
    ("sqlite", "challenger", "promote"),
    pytest.param("postgres", "champion", "challenger_retired", marks=pytest.mark.postgres),
])
def test_the_arena_decides_the_challenger(tmp_path, starter_dir, redis_env, backend, vote_for, outcome):  # noqa: F811
    env = redis_env | LENIENT_GATE | services.live_database(backend) | {
        "PROMOTION": "challenger", "CHALLENGER_DECIDE": "auto", "CHALLENGER_MIN_VOTES": "6",
        "ARENA_PREFETCH_SIZE": "0"}
    with live_server(tmp_path=tmp_path, starter_path=starter_dir["gpt2"], users=USERS, prompts=20,
                     env_extra=env) as srv, live_worker(srv):
        new = train_challenger(srv)
        assert roles(srv) == {1: "champion", new: "challenger"}
        assert call(srv, "GET", "/api/serving", "opr")[1]["wanted"] == 1
        # The worker samples both on the probe set after the run (20 pool prompts: all of them, 3 samples each).
        compared = wait_compared(srv, 1, new)
        assert len(compared["probes"]) == 20
        assert all(len(p["a"]) == 3 and len(p["b"]) == 3 for p in compared["probes"])

        # The pages on this backend: the side-by-side view of the worker's samples for an operator, and the arena
        # page for an annotator with a battle pending, which names no version.
        operator, annotator = LiveClient(srv), LiveClient(srv)
        operator.login("opr", srv.users["opr"]["password"])
        status, _, page = operator.request(f"/ops/versions/compare?a=1&b={new}")
        assert status == 200 and page.count('class="probe first"') == 20 and compared["probes"][0]["input"] in page
        status, _, page = operator.request("/ops/versions")
        assert status == 200 and 'id="challenger-verdict"' in page and f'id="challenger-version">{new}<' in page

        target = new if vote_for == "challenger" else 1
        for votes in range(1, 7):
            status, battle = call(srv, "POST", "/api/arena/battles", "ann", {})
            assert status == 201, battle
            assert "version" not in json.dumps(battle)  # blind for the annotator
            if votes == 1:
                annotator.login("ann", srv.users["ann"]["password"])
                status, _, page = annotator.request("/arena")
                pending = json.loads(re.search(r'id="pending-data" type="application/json">(.*?)</script>', page,
                                               re.S).group(1))
                assert status == 200 and pending["id"] == battle["id"] and pending["candidates"] == battle["candidates"]
                assert "version_id" not in page and not re.search(r'data-version|"version', page)
            # An operator sees the versions of someone else's battle: champion against challenger.
            seen = call(srv, "GET", f"/api/arena/battles/{battle['id']}", "opr")[1]
            assert {c["version_id"] for c in seen["candidates"]} == {1, new}
            pick = next(c["id"] for c in seen["candidates"] if c["version_id"] == target)
            status, voted = call(srv, "POST", f"/api/arena/battles/{battle['id']}/vote", "ann", {"candidate_id": pick})
            assert status == 201 and "version" not in json.dumps(voted)
            standing = call(srv, "GET", "/api/challenger", "opr")[1]["standing"]
            if votes < 6:  # the rule waits for CHALLENGER_MIN_VOTES
                assert standing["votes"] == votes and standing["challenger"] == new
        assert standing is None  # decided at the sixth vote
        expected = {1: None, new: "champion"} if outcome == "promote" else {1: "champion", new: None}
        assert roles(srv) == expected
        events = call(srv, "GET", "/api/audit?kind=versions", "opr")[1]["events"]
        made = next(e for e in events if e["action"] == "challenger")
        assert made["actor"].startswith("run:") and made["to_version_id"] == new
        decided = events[0]
        assert (decided["action"], decided["actor"], decided["to_version_id"]) == (outcome, "arena", new)
        assert decided["reason"].startswith("arena rule: ")


@pytest.mark.browser
def test_operator_compares_side_by_side_and_promotes(browser, tmp_path, starter_dir, redis_env):  # noqa: F811
    from playwright.sync_api import expect

    env = redis_env | LENIENT_GATE | {"PROMOTION": "challenger", "ARENA_PREFETCH_SIZE": "0"}
    with live_server(tmp_path=tmp_path, starter_path=starter_dir["gpt2"], users=USERS, prompts=20,
                     env_extra=env) as srv, live_worker(srv):
        new = train_challenger(srv)
        wait_compared(srv, 1, new)
        for i in range(4):  # a few votes, so the panel has a record to show
            status, battle = call(srv, "POST", "/api/arena/battles", "ann", {})
            # Two ties among them keep the verdict undecided whichever side the other two favour: four votes for
            # the left candidate went to one version in 1 of 8 draws, and its interval cleared ("behind").
            call(srv, "POST", f"/api/arena/battles/{battle['id']}/vote", "ann",
                 {"verdict": "tie"} if i % 2 else {"candidate_id": battle["candidates"][0]["id"]})

        annotator = new_page(browser)
        log_in(annotator, srv, "ann")
        annotator.goto(srv.url("/arena"))
        annotator.click("#next")
        expect(annotator.locator("#battle")).to_be_visible()
        html = annotator.content()
        assert "version_id" not in html and f"version {new}" not in html.lower()

        operator = new_page(browser)
        log_in(operator, srv, "opr")
        operator.goto(srv.url("/ops/versions"))
        expect(operator.locator("#challenger-version")).to_have_text(str(new))
        expect(operator.locator("#challenger-verdict")).to_have_text("undecided")
        expect(operator.locator("#challenger-votes")).to_have_text("4")
        expect(operator.locator(f"#versions tr[data-version='{new}'] [data-role=challenger]")).to_be_visible()
        operator.locator("#challenger").screenshot(path=str(CHALLENGER_SCREENSHOT))

        operator.click("#compare-challenger")
        operator.wait_for_url("**/ops/versions/compare**")
        rows = operator.locator("#side-by-side tr.probe")
        expect(rows.first).to_be_visible()
        assert rows.count() == 60  # 20 probes x 3 samples
        assert operator.locator("#side-by-side td.probe-input").count() == 20
        SIDE_BY_SIDE_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        operator.screenshot(path=str(SIDE_BY_SIDE_SCREENSHOT), full_page=False)

        operator.goto(srv.url("/ops/versions"))
        operator.fill("#promote-form input[name=reason]", "reads better side by side")
        operator.click("#promote")
        expect(operator.locator("#active-version")).to_have_text(str(new))
        expect(operator.locator("#no-challenger")).to_be_visible()
        expect(operator.locator("#audit tbody tr").first).to_contain_text("promote")
        expect(operator.locator("#audit tbody tr").first).to_contain_text("reads better side by side")
        assert annotator.js_errors == [] and operator.js_errors == []
