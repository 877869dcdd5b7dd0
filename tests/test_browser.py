"""The annotation page in a real browser (Debian chromium via Playwright) against a real gunicorn server."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.live import ROOT, live_server
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
    return card_ids(page)


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
    assert page.js_errors == []

    engine = create_engine(server.db_url)
    try:
        with engine.connect() as conn:
            user_id = conn.execute(text("select id from users where name = 'ann'")).scalar_one()
            prefs = conn.execute(text("select comparison_id, verdict, chosen_candidate_id from preferences "
                                      "where user_id = :u"), {"u": user_id}).all()
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
    assert undone_prefs == 0
    assert undo_events == 1


def test_own_input_is_shown_as_text_not_html(page, server):
    from playwright.sync_api import expect

    log_in(page, server, "ann")
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
