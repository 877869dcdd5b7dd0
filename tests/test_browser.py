"""The annotation page in a real browser (Debian chromium via Playwright) against a real gunicorn server."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from harness.live import ROOT, live_server
from tests.services import unavailable

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
SCREENSHOT = ROOT / "docs" / "screenshots" / "annotate.png"
TIMEOUT_MS = 30_000  # per step: generation on a busy 2-core machine can be slow, but never this slow
PAYLOAD = "<script>window.__pwned=1</script><b>x</b>"
CARD_IDS_JS = "() => [...document.querySelectorAll('#cards button.card')].map((b) => b.dataset.candidateId).join(',')"


@pytest.fixture(scope="module", autouse=True)
def _expect_timeout():
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture(scope="module")
def server(tmp_path_factory, starter_dir):
    with live_server(tmp_path=tmp_path_factory.mktemp("live-browser"), starter_path=starter_dir["gpt2"]) as srv:
        yield srv


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        unavailable("Chromium", f"{CHROMIUM} is not installed (`make chromium`)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.js_errors = []
    page.on("pageerror", lambda exc: page.js_errors.append(str(exc)))
    yield page
    context.close()


def log_in(page, server, name: str) -> None:
    page.goto(server.url("/"))
    page.wait_for_url("**/auth/login**")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", server.users[name]["password"])
    page.click("form button[type=submit]")
    page.wait_for_url(server.url("/"))


def card_ids(page) -> list[int]:
    ids = page.evaluate(CARD_IDS_JS)
    return [int(i) for i in ids.split(",")] if ids else []


def wait_for_new_comparison(page, old: list[int]) -> list[int]:
    """Wait until cards other than `old` are on screen (the answer was stored and the next one shown)."""
    old_key = ",".join(map(str, old))
    try:
        page.wait_for_function(f"(old) => {{ const ids = ({CARD_IDS_JS})(); return ids && ids !== old; }}",
                               arg=old_key, timeout=TIMEOUT_MS)
    except Exception as exc:
        raise AssertionError(f"no new comparison; status: {page.text_content('#status')!r}") from exc
    wait_armed(page)
    return card_ids(page)


def wait_armed(page) -> None:
    """Wait out the moment after a comparison appears in which it takes no answer key (ARM_MS in annotate.js)."""
    page.wait_for_selector("#cards[data-armed=true]")


def new_annotator(server, name: str) -> None:
    """Create an annotator on the live server (tests that need one with nothing open yet)."""
    import re

    out = server.flask("users", "create", name, "--role", "annotator")
    server.users[name] = {"password": re.search(r"^password: (\S+)$", out, re.M).group(1)}


def test_mouse_keyboard_undo_are_stored_exactly(page, server):
    from playwright.sync_api import expect
    from sqlalchemy import create_engine, text

    log_in(page, server, "ann")
    expect(page.locator("#mine")).to_have_text("0")

    page.click("#next")
    first = wait_for_new_comparison(page, [])
    assert len(first) == 3, first

    # Mouse: click the third card.
    clicked = first[2]
    page.locator(f"#cards button.card[data-candidate-id='{clicked}']").click()
    second = wait_for_new_comparison(page, first)
    expect(page.locator("#mine")).to_have_text("1")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    # Keyboard: "2" picks the second card of the next comparison.
    page.keyboard.press("2")
    third = wait_for_new_comparison(page, second)
    expect(page.locator("#mine")).to_have_text("2")
    assert len(third) == 3

    # U undoes the keyboard answer and puts that comparison back on screen.
    page.keyboard.press("u")
    expect(page.locator("#status")).to_have_text("Undone: answer it again.")
    expect(page.locator("#mine")).to_have_text("1")
    assert card_ids(page) == second
    wait_armed(page)

    # Shift+3 and a click on the first card's toggle mark both "also fine"; "2" then picks the best.
    page.keyboard.press("Shift+3")
    toggles = page.locator("#cards button.also-good")
    expect(toggles.nth(2)).to_have_attribute("aria-pressed", "true")
    toggles.nth(0).click()
    expect(toggles.nth(0)).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("2")
    wait_for_new_comparison(page, second)
    expect(page.locator("#mine")).to_have_text("2")
    assert page.js_errors == []

    engine = create_engine(server.db_url)
    try:
        with engine.connect() as conn:
            user_id = conn.execute(text("select id from users where name = 'ann'")).scalar_one()
            prefs = conn.execute(text("select comparison_id, verdict, chosen_candidate_id from preferences "
                                      "where user_id = :u and also_good is null"), {"u": user_id}).all()
            marked = conn.execute(text("select chosen_candidate_id, also_good from preferences "
                                       "where user_id = :u and also_good is not null"), {"u": user_id}).one()
            undone = conn.execute(text("select comparison_id from candidates where id = :c"),
                                  {"c": second[1]}).scalar_one()
            undone_prefs = conn.execute(text("select count(*) from preferences where comparison_id = :c"),
                                        {"c": undone}).scalar_one()
            undo_events = conn.execute(
                text("select count(*) from audit_events where action = 'undo_answer'")).scalar_one()
    finally:
        engine.dispose()
    assert len(prefs) == 1, prefs
    _, verdict, chosen = prefs[0]
    assert (verdict, chosen) == ("choice", clicked)
    assert undone_prefs == 1  # undone, then answered again with the marks
    assert undo_events == 1
    also_good = json.loads(marked[1]) if isinstance(marked[1], str) else marked[1]
    assert (marked[0], also_good) == (second[1], sorted([second[0], second[2]]))


def test_own_input_is_shown_as_text_not_html(page, server):
    from playwright.sync_api import expect

    new_annotator(server, "typist")
    log_in(page, server, "typist")
    page.fill("#own-text", PAYLOAD)
    page.click("#own button[type=submit]")
    try:
        expect(page.locator("#input")).to_have_text(PAYLOAD)
    except AssertionError as exc:
        raise AssertionError(f"status: {page.text_content('#status')!r}") from exc
    assert len(card_ids(page)) == 3

    def assert_literal() -> None:
        assert page.evaluate("() => window.__pwned") is None
        assert page.locator("#input b, #input script, #cards script").count() == 0
        assert page.text_content("#input") == PAYLOAD

    assert_literal()
    # A reload renders the same comparison from the server (the pending JSON in the page): still only text.
    page.reload()
    expect(page.locator("#input")).to_have_text(PAYLOAD)
    assert_literal()
    assert page.js_errors == []


def add_arena_version(server) -> None:
    """Register the starter again as version 2 (not active) and have the arena compare versions 1 and 2."""
    from app import create_app
    from app.arena.matchups import add_pair
    from app.platform.extensions import db
    from tests.conftest import install_child

    app = create_app({"SQLALCHEMY_DATABASE_URI": server.db_url, "MODEL_STORE": str(server.model_store),
                      "REDIS_URL": None, "PREFETCH_SIZE": 0, "SECRET_KEY": "live-test-secret"})
    try:
        install_child(app, server.model_store / "1", number=2, parent=1, activate=False)
        with app.app_context():
            add_pair(a=1, b=2, actor="test")
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def test_arena_votes_by_keyboard_and_the_leaderboard_plots_them(page, server):
    """Two battles voted with the keys (left, then tie) are stored as such; an operator sees the ratings plot."""
    import re

    from playwright.sync_api import expect
    from sqlalchemy import create_engine, text

    add_arena_version(server)
    log_in(page, server, "ann")
    page.goto(server.url("/arena"))
    page.keyboard.press("n")
    sides = page.locator("#sides button.side")
    expect(sides).to_have_count(2)
    left = int(sides.nth(0).get_attribute("data-candidate-id"))
    page.keyboard.press("ArrowLeft")
    expect(page.locator("#votes")).to_have_text("1")
    page.wait_for_function("(old) => { const b = document.querySelector('#sides button.side'); "
                           "return b && b.dataset.candidateId !== old; }", arg=str(left))
    page.screenshot(path=str(SCREENSHOT.parent / "arena.png"), full_page=True)
    second = int(sides.nth(0).get_attribute("data-candidate-id"))
    page.keyboard.press("t")
    expect(page.locator("#votes")).to_have_text("2")
    assert page.js_errors == []

    engine = create_engine(server.db_url)
    try:
        with engine.connect() as conn:
            votes = conn.execute(text("select b.verdict, b.winner_candidate_id from arena_battles b join "
                                      "arena_candidates c on c.battle_id = b.id and c.position = 0 "
                                      "where c.id in (:a, :b) order by b.id"), {"a": left, "b": second}).all()
    finally:
        engine.dispose()
    assert [tuple(v) for v in votes] == [("choice", left), ("tie", None)]

    out = server.flask("users", "create", "opr", "--role", "operator")
    server.users["opr"] = {"password": re.search(r"^password: (\S+)$", out, re.M).group(1)}
    page.context.clear_cookies()
    log_in(page, server, "opr")
    page.goto(server.url("/ops/versions"))
    expect(page.locator("#ratings-plot circle.point")).to_have_count(2)
    expect(page.locator("#leaderboard tbody tr")).to_have_count(2)
    page.locator("#arena").screenshot(path=str(SCREENSHOT.parent / "leaderboard.png"))


def test_an_admin_edits_the_task_and_the_annotator_sees_it(page, server, browser):
    """The admin page's task form saves a revision; the annotation page shows its question and its guidelines as
    Markdown, with every script trick in them inert; the annotator is told when the task changed under them; a
    restore brings the old text back."""
    import re

    from playwright.sync_api import expect

    out = server.flask("users", "create", "tadm", "--role", "admin")
    server.users["tadm"] = {"password": re.search(r"^password: (\S+)$", out, re.M).group(1)}
    log_in(page, server, "tadm")
    page.goto(server.url("/admin/"))
    page.fill("input[name=question]", "Which reply would you send?")
    page.fill("textarea[name=guidelines]", "Pick the **kindest** reply.\n\n<script>window.__pwned=1</script>\n\n"
              "[a link](javascript:window.__pwned=2)\n\n<img src=x onerror=\"window.__pwned=3\">\n\n"
              "![x](x\" onerror=\"window.__pwned=4)")
    page.fill("textarea[name=system_prompt]", "You answer customer emails.")
    page.click("#save-task")
    expect(page.locator(".flash.ok")).to_contain_text("Saved the task as revision")
    revision = int(page.locator("#task-revision").inner_text())
    expect(page.locator(f"#revisions tr[data-revision='{revision}']")).to_contain_text("tadm")

    annotator = browser.new_context(viewport={"width": 1280, "height": 860}).new_page()
    annotator.set_default_timeout(TIMEOUT_MS)
    errors = []
    annotator.on("pageerror", lambda exc: errors.append(str(exc)))
    new_annotator(server, "reader")
    log_in(annotator, server, "reader")
    expect(annotator.locator("#question")).to_have_text("Which reply would you send?")
    expect(annotator.locator(".guidelines-text strong")).to_have_text("kindest")
    guidelines = annotator.locator(".guidelines-text")
    assert guidelines.locator("script, iframe, svg").count() == 0
    assert guidelines.locator("[onerror], [onclick], [onload]").count() == 0
    assert guidelines.locator("a[href^='javascript' i], img[src^='javascript' i]").count() == 0
    annotator.wait_for_timeout(300)  # any image error handler would have run by now
    assert annotator.evaluate("() => window.__pwned") is None and errors == []

    # A comparison shown under the page's revision: no notice. Then the admin saves again, and the next one says so.
    annotator.keyboard.press("n")
    expect(annotator.locator("#cards button.card")).to_have_count(3)
    wait_armed(annotator)
    expect(annotator.locator("#task-notice")).to_be_hidden()
    page.fill("input[name=question]", "Which reply is kindest?")
    page.click("#save-task")
    expect(page.locator("#task-revision")).to_have_text(str(revision + 1))
    old = card_ids(annotator)
    annotator.keyboard.press("1")
    wait_for_new_comparison(annotator, old)
    expect(annotator.locator("#task-notice")).to_be_visible()
    annotator.reload()
    expect(annotator.locator("#question")).to_have_text("Which reply is kindest?")
    annotator.screenshot(path=str(SCREENSHOT.parent / "task-annotate.png"))
    annotator.context.close()
    page.locator("#task").screenshot(path=str(SCREENSHOT.parent / "task-admin.png"))

    page.locator("#revisions tr[data-revision='1'] button.restore").click()
    expect(page.locator(".flash.ok")).to_contain_text(f"Revision 1 restored as revision {revision + 2}")
    expect(page.locator("input[name=question]")).to_have_value("Which rewrite is best?")
    assert page.js_errors == []


def test_a_day_at_the_desk_meets_no_traps(page, server):
    """The annotation walkthrough's traps, each met again: empty and long input said in words; the keys answer the
    comparison after a typed input, and Esc leaves the box; a quick double press answers once; "also fine" marks
    survive a reload; N and a typed input wait for the open comparison; Back and Forward show the server's state."""
    from playwright.sync_api import expect
    from sqlalchemy import create_engine, text

    def stored() -> list[tuple]:
        engine = create_engine(server.db_url)
        try:
            with engine.connect() as conn:
                return [tuple(r) for r in conn.execute(text(
                    "select p.comparison_id, p.verdict from preferences p join users u on u.id = p.user_id "
                    "where u.name = 'desk' order by p.id"))]
        finally:
            engine.dispose()

    new_annotator(server, "desk")
    log_in(page, server, "desk")
    status = page.locator("#status")
    expect(page.locator("#mine-unit")).to_have_text("answers")
    page.click("#own button[type=submit]")
    expect(status).to_have_text("Type an input first, or press N for the next prompt from the pool.")
    page.fill("#own-text", "x" * 2100)
    page.press("#own-text", "Enter")
    expect(status).to_have_text("This input is 2100 characters; the limit is 2000. Shorten it.")
    page.fill("#own-text", "Please send the report. " * 60)  # 1,440 characters: within the box, past the model
    page.press("#own-text", "Enter")
    expect(status).to_contain_text("This input is too long for the model:")
    expect(status).to_contain_text("Shorten it by about")
    assert card_ids(page) == []

    # Typed input, Enter, then "1": the key answers the comparison instead of typing into the box.
    page.fill("#own-text", "Fix the printer now.")
    page.press("#own-text", "Enter")
    expect(page.locator("#input")).to_have_text("Fix the printer now.")
    wait_armed(page)
    page.keyboard.press("1")
    expect(page.locator("#mine")).to_have_text("1")
    expect(page.locator("#mine-unit")).to_have_text("answer")
    assert page.input_value("#own-text") == "" and len(stored()) == 1
    # Esc leaves the box: N then takes a pool prompt instead of typing "n".
    page.fill("#own-text", "half typed")
    page.press("#own-text", "Escape")
    page.keyboard.press("n")
    first = wait_for_new_comparison(page, [])
    assert page.input_value("#own-text") == "half typed"

    # A double press 50 ms apart: one answer, and the comparison that appears next is left alone.
    page.keyboard.press("1")
    page.wait_for_timeout(50)
    page.keyboard.press("1")
    second = wait_for_new_comparison(page, first)
    page.wait_for_timeout(600)  # well past the guard: had the second press gone through, it would be stored by now
    answers = stored()
    assert len(answers) == 2 and answers[-1][1] == "choice"
    expect(page.locator("#mine")).to_have_text("2")

    # N while it is open: told what to do. A typed input meanwhile: the pool comparison waits, and comes back.
    page.keyboard.press("n")
    expect(status).to_have_text("Answer the comparison on screen first, or press S to skip it.")
    page.fill("#own-text", "Another input.")
    page.press("#own-text", "Enter")
    expect(page.locator("#input")).to_have_text("Another input.")
    expect(status).to_have_text("The pool comparison waits for you: N brings it back once this one is answered.")
    page.fill("#own-text", "A third input.")  # a typed one waits for its answer
    page.press("#own-text", "Enter")
    expect(status).to_have_text("Answer the comparison on screen first, or press S to skip it.")
    page.press("#own-text", "Escape")
    wait_armed(page)
    page.keyboard.press("t")
    expect(page.locator("#comparison")).to_be_hidden()
    page.keyboard.press("n")
    wait_armed(page)
    assert card_ids(page) == second

    # "Also fine" marks survive a reload of the page.
    page.keyboard.press("Shift+1")
    page.reload()
    wait_armed(page)
    assert card_ids(page) == second
    expect(page.locator("#cards button.also-good").nth(0)).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#cards button.also-good").nth(1)).to_have_attribute("aria-pressed", "false")
    page.keyboard.press("2")
    third = wait_for_new_comparison(page, second)

    # Back and Forward: the pages come from the server again (no-store), showing what is open there now.
    response = page.reload()
    assert response.headers["cache-control"] == "no-store"
    wait_armed(page)
    page.go_back()
    page.wait_for_url(server.url("/"))  # the login page sends a logged-in user on
    wait_armed(page)
    assert card_ids(page) == third
    expect(page.locator("#mine")).to_have_text("4")
    page.go_forward()
    wait_armed(page)
    assert card_ids(page) == third
    assert len(stored()) == 4

    # The typing limit (5 a minute; the input too long for the model did not count) is said in words too: two typed
    # inputs so far, so three more pass and the fourth is refused.
    for i in range(4):
        page.fill("#own-text", f"Please water plant number {i}.")
        page.press("#own-text", "Enter")
        if i == 3:
            break
        expect(page.locator("#input")).to_have_text(f"Please water plant number {i}.")
        wait_armed(page)
        page.keyboard.press("s")
        expect(page.locator("#comparison")).to_be_hidden()
    expect(status).to_contain_text("too many typed prompts: at most 5 per minute")
    assert page.js_errors == []


def test_without_the_cli_an_admin_adds_an_annotator_who_annotates_flags_and_fixes_an_answer(page, server, browser):
    """The desk without a terminal: an admin creates an annotator on the admin page (the password shown once); the
    annotator answers, flags a comparison with F (it is skipped), and changes an answer on My answers; the admin
    sees the flag, clears it, and sees the team's numbers."""
    import re

    from playwright.sync_api import expect

    out = server.flask("users", "create", "boss", "--role", "admin")
    server.users["boss"] = {"password": re.search(r"^password: (\S+)$", out, re.M).group(1)}
    log_in(page, server, "boss")
    page.goto(server.url("/admin/"))
    page.fill("#add-person input[name=name]", "newbie")
    page.select_option("#add-person select[name=role]", "annotator")
    page.click("#add-person button[type=submit]")
    password = page.locator("#secret-password").inner_text()
    assert len(password) >= 10 and page.locator("#secret-token").inner_text()
    page.screenshot(path=str(SCREENSHOT.parent / "new-account.png"))
    server.users["newbie"] = {"password": password}

    worker = browser.new_context(viewport={"width": 1280, "height": 860}).new_page()
    worker.set_default_timeout(TIMEOUT_MS)
    log_in(worker, server, "newbie")
    worker.keyboard.press("n")
    first = wait_for_new_comparison(worker, [])
    worker.keyboard.press("1")
    second = wait_for_new_comparison(worker, first)
    worker.keyboard.press("f")
    expect(worker.locator("#flag-form")).to_be_visible()
    worker.select_option("#flag-reason", "unclear")
    worker.fill("#flag-comment", "Which report is meant?")
    worker.click("#flag-form button[type=submit]")
    wait_for_new_comparison(worker, second)
    expect(worker.locator("#status")).to_have_text("Flagged for an admin, and skipped.")

    worker.goto(server.url("/my"))
    answers = worker.locator("#answers li.answer")
    expect(answers).to_have_count(2)
    picked = answers.nth(1).locator("button.card.picked")
    expect(picked).to_have_count(1)
    other = answers.nth(1).locator("button.card:not(.picked)").first
    other_id = other.get_attribute("data-candidate-id")
    other.click()
    expect(worker.locator("#status")).to_have_text("Changed.")
    worker.reload()
    expect(worker.locator(f"#answers button.card.picked[data-candidate-id='{other_id}']")).to_have_count(1)
    worker.screenshot(path=str(SCREENSHOT.parent / "my-answers.png"), full_page=True)
    worker.context.close()

    page.goto(server.url("/admin/"))
    flag_row = page.locator("#flags-table tbody tr")
    expect(flag_row).to_have_count(1)
    expect(flag_row).to_contain_text("Which report is meant?")
    expect(page.locator("#team-table tr[data-annotator='newbie']")).to_contain_text("2")
    page.locator("#team").screenshot(path=str(SCREENSHOT.parent / "annotators.png"))
    page.locator("#flags").screenshot(path=str(SCREENSHOT.parent / "flags.png"))
    flag_row.locator("button.clear-flag").click()
    expect(page.locator(".flash.ok")).to_contain_text("back in the queue")
    expect(page.locator("#flags-table")).to_have_count(0)
    assert page.js_errors == []


def test_the_arena_says_when_both_versions_wrote_the_same_text_and_key_badges_do_not_wrap(page, server):
    """Two sides with the very same text: the page says so, instead of leaving the annotator to hunt for a
    difference. The key badges keep on one line."""
    from playwright.sync_api import expect
    from sqlalchemy import create_engine, text

    new_annotator(server, "twins")
    engine = create_engine(server.db_url)
    try:
        with engine.begin() as conn:
            user_id = conn.execute(text("select id from users where name = 'twins'")).scalar_one()
            battle_id = conn.execute(text(
                "insert into arena_battles (input_text, settings, seed, state, user_id, created_at, assigned_at) "
                "values ('Fix it.', '{}', 1, 'assigned', :u, current_timestamp, current_timestamp) returning id"),
                {"u": user_id}).scalar_one()
            for position in (0, 1):
                conn.execute(text("insert into arena_candidates (battle_id, position, version_id, model_prompt, text) "
                                  "values (:b, :p, 1, 'Fix it.', 'Could you fix it, please?')"),
                             {"b": battle_id, "p": position})
    finally:
        engine.dispose()
    log_in(page, server, "twins")
    page.goto(server.url("/arena"))
    expect(page.locator("#status")).to_have_text("Both versions wrote the same text: press T for a tie.")
    assert page.evaluate("() => getComputedStyle(document.querySelector('kbd')).whiteSpace") == "nowrap"
    assert page.locator("link[rel=icon]").count() == 1 and page.js_errors == []
    # Log out, focused by the mouse (pressed, released elsewhere: no click), draws no ring; by the keyboard it does.
    logout = page.locator("button.link")
    box = logout.bounding_box()
    page.mouse.move(box["x"] + 2, box["y"] + 2)
    page.mouse.down()
    page.mouse.move(5, box["y"] + 300)
    page.mouse.up()
    ring = "() => { const b = document.querySelector('button.link'); return [document.activeElement === b, " \
           "getComputedStyle(b).outlineStyle]; }"
    assert page.evaluate(ring) == [True, "none"]
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")
    assert page.evaluate(ring) == [True, "solid"]
    assert page.url.endswith("/arena")  # still logged in: nothing was clicked


def test_a_busy_model_shows_a_waiting_page_that_asks_again(browser, tmp_path, starter_dir):
    """Past MAX_WAIT_SECONDS the next comparison is refused with 503 and Retry-After; the page says the model is busy,
    counts down and asks again by itself, instead of hanging or showing an error. (A bound shorter than any batch
    makes every request after this worker's first one wait past it; with no prefetcher, every request samples.)"""
    from playwright.sync_api import expect

    with live_server(tmp_path=tmp_path, starter_path=starter_dir["gpt2"],
                     env_extra={"MAX_WAIT_SECONDS": "0.000001", "PREFETCH_SIZE": "0"}) as srv:  # no buffer
        context = browser.new_context(viewport={"width": 1280, "height": 860})
        context.set_default_timeout(TIMEOUT_MS)
        page = context.new_page()
        errors, refused = [], []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        seen = []  # every answer to POST /api/comparisons, for the message if this fails
        page.on("response", lambda r: (seen.append(r.status), r.status == 503 and refused.append(
            r.headers.get("retry-after"))) if r.url.endswith("/api/comparisons") else None)
        log_in(page, srv, "ann")
        page.click("#next")
        first = wait_for_new_comparison(page, [])  # the worker's first batch: nothing to judge by, served
        page.locator(f"#cards button.card[data-candidate-id='{first[0]}']").click()
        try:
            expect(page.locator("#status.waiting")).to_contain_text("The model is busy")
            expect(page.locator("#status.waiting")).to_contain_text("Asking again in")
        except AssertionError as exc:
            raise AssertionError(f"no waiting state; status {page.text_content('#status')!r}, mine "
                                 f"{page.text_content('#mine')!r}, 503s {refused}, all {seen}; server log:\n"
                                 f"{srv.log_path.read_text()[-3000:]}") from exc
        deadline = time.monotonic() + 20
        while len(refused) < 2 and time.monotonic() < deadline:
            page.wait_for_timeout(200)
        assert len(refused) >= 2 and set(refused) == {"1"}, refused  # it asked again after Retry-After
        expect(page.locator("#mine")).to_have_text("1")  # the answer was stored before the wait
        assert errors == []
        context.close()
