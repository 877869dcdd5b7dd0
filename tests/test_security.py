"""Security headers, the limiter's store and keys, the session key, and hostile input that used to be a 500."""

from __future__ import annotations

import base64
import hashlib
import multiprocessing
import os
import re
import stat
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.accounts.security import CSP, limits_storage_uri
from app.platform.config import instance_secret_key, resolve_secret_key
from app.platform.exceptions import ConfigError
from harness.live import ROOT, free_port, live_server
from tests.services import BOTH_BACKENDS
from tests.test_auth import PID_LOG, LiveClient


@pytest.mark.parametrize("path", ["/auth/login", "/healthz", "/api/openapi.json", "/static/app.css", "/nowhere"])
def test_every_answer_carries_the_headers(client, path):
    res = client.get(path)
    assert res.headers["Content-Security-Policy"] == CSP
    assert res.headers["X-Content-Type-Options"] == "nosniff"
    assert res.headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in CSP and "script-src 'self';" in CSP and "unsafe-inline" not in CSP


def test_limits_storage_uri():
    assert limits_storage_uri(None) == "memory://"
    assert limits_storage_uri("redis://h:6379/0") == "redis://h:6379/0"
    assert limits_storage_uri("unix:///tmp/redis.sock?db=0") == "redis+unix:///tmp/redis.sock?db=0"


def test_a_per_user_limit_as_other_views_use_it(tmp_path, starter_dir):
    """The limiter's recipe for other views: @limiter.limit(setting, key_func=user_key) counts per user."""
    from flask import current_app

    from app import create_app
    from app.accounts.security import user_key
    from app.platform.extensions import limiter
    from tests.conftest import Users, make_config, upgrade

    app = create_app(make_config(backend="sqlite", tmp_path=tmp_path, DEMO_LIMIT="2 per minute"))

    @app.get("/demo")
    @limiter.limit(lambda: current_app.config["DEMO_LIMIT"], key_func=user_key)
    def demo():
        return {"key": user_key()}

    upgrade(app)
    users = Users(app)
    ann, ben = users.create("ann"), users.create("ben")
    clients = {name: app.test_client() for name in ("ann", "ben")}
    for name, client in clients.items():
        users.login(client, name)
    codes = [clients["ann"].get("/demo").status_code for _ in range(3)]
    res = clients["ben"].get("/demo")
    assert codes == [200, 200, 429] and res.json == {"key": f"user:{ben['id']}"}
    assert app.test_client().get("/demo").json == {"key": "address:127.0.0.1"}
    assert ann["id"] != ben["id"]


# --- the session key -------------------------------------------------------------------------------------------


def _read_key(barrier, path: Path, out) -> None:
    barrier.wait()  # all at once, as gunicorn's workers, the prefetcher and the worker start
    out.put(instance_secret_key(path))


def test_the_generated_key_is_made_once_even_in_a_race(tmp_path):
    path = tmp_path / "instance" / "secret_key"
    ctx = multiprocessing.get_context("fork")
    barrier, out = ctx.Barrier(8), ctx.Queue()
    procs = [ctx.Process(target=_read_key, args=(barrier, path, out)) for _ in range(8)]
    for p in procs:
        p.start()
    results = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert len({key for key, _ in results}) == 1 and sum(created for _, created in results) == 1
    assert len(results[0][0]) == 64 and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["secret_key"]  # no temp file left behind
    assert instance_secret_key(path) == (results[0][0], False)


def test_no_default_key(monkeypatch, tmp_path, caplog):
    import logging

    from app.platform.config import Config

    monkeypatch.delenv("SECRET_KEY", raising=False)
    monkeypatch.delenv("PREFLOOP_ENV", raising=False)
    cfg = vars(Config()) | {"SECRET_KEY_FILE": str(tmp_path / "key")}
    assert cfg["SECRET_KEY"] is None
    key = resolve_secret_key(cfg, logging.getLogger("test"))
    assert key == (tmp_path / "key").read_text() and key != "dev-only-change-me"
    assert str(tmp_path / "key") in caplog.text
    with pytest.raises(ConfigError, match="PREFLOOP_ENV=production"):
        resolve_secret_key(cfg | {"PREFLOOP_ENV": "production"}, logging.getLogger("test"))
    assert resolve_secret_key(cfg | {"PREFLOOP_ENV": "production", "SECRET_KEY": "k"}, None) == "k"


@pytest.mark.slow
def test_live_without_a_key_every_worker_shares_the_generated_one(tmp_path, starter_dir):
    key_file = tmp_path / "instance" / "secret_key"
    env = {"SECRET_KEY": None, "SECRET_KEY_FILE": str(key_file), "PREFETCH_SIZE": "0"}
    with live_server(tmp_path=tmp_path, starter_path=starter_dir["gpt2"], env_extra=env, workers=2, prompts=0,
                     gunicorn_args=PID_LOG) as srv:
        browser = LiveClient(srv)
        assert browser.login("ann", srv.users["ann"]["password"])[0] == 302
        session = {"session": browser.cookie("session")}
        # Concurrent rounds until both workers have answered (which one takes a request is the kernel's choice,
        # and a worker still loading its model takes none): every answer must be a 200 with that one session.
        deadline, codes = time.monotonic() + 60, []
        with ThreadPoolExecutor(4) as pool:
            while len(set(re.findall(r"^<(\d+)> GET / 200$", log := srv.log_path.read_text(), re.M))) < 2:
                assert time.monotonic() < deadline, log[-3000:]
                codes += pool.map(lambda _: LiveClient(srv, cookies=session).request("/")[0], range(8))
                time.sleep(0.2)  # a worker logs the request just after answering it
        assert codes and set(codes) == {200}
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert f"using the session key in {key_file}" in log
    # Both workers accepted the session that one of them signed.
    assert len(set(re.findall(r"^<(\d+)> GET / 200$", log, re.M))) == 2, log[-3000:]


@pytest.mark.slow
def test_live_production_without_a_key_stops_start_up(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "REDIS_URL", "DATABASE_URL")}
    env |= {"PREFLOOP_ENV": "production", "PYTHONPATH": str(ROOT), "FLASK_APP": "app:create_app",
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite'}", "PREFETCH_SIZE": "0"}
    cli = subprocess.run([sys.executable, "-m", "flask", "db", "upgrade"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert cli.returncode != 0 and "SECRET_KEY is not set" in cli.stderr
    started = time.monotonic()
    web = subprocess.run([sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{free_port()}", "--config",
                          "app/gunicorn_conf.py", "app:create_app()"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=120)
    assert web.returncode != 0 and "PREFLOOP_ENV=production requires it" in web.stderr, web.stderr[-2000:]
    assert time.monotonic() - started < 120


# --- hostile input ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BOTH_BACKENDS, indirect=True)
def test_a_lone_surrogate_is_refused_everywhere(app, client, admin, annotator, operator):
    from app.platform.exceptions import BadInput
    from app.platform.extensions import db
    from app.platform.validation import clean_text
    from app.tables import AuditEvent, Comparison, Prompt

    with pytest.raises(BadInput, match="surrogate"):
        clean_text("a \ud800", field="prompt", max_chars=100)  # files and the CLI come this way
    assert clean_text("ok 😀 é", field="prompt", max_chars=100) == "ok 😀 é"

    raw = b'{"prompt": "hello \\ud800 there"}'
    res = client.post("/api/comparisons", data=raw, content_type="application/json", headers=annotator["headers"])
    assert res.status_code == 400 and "surrogate" in res.json["error"]
    res = client.post("/api/prompts", data=b'{"prompts": ["fine", "\\udfff"]}', content_type="application/json",
                      headers=admin["headers"])
    assert res.status_code == 400 and "surrogate" in res.json["error"]
    res = client.post("/api/model-versions/1/activate", data=b'{"reason": "\\udc80"}',
                      content_type="application/json", headers=operator["headers"])
    assert res.status_code == 400 and "surrogate" in res.json["error"]
    with app.app_context():
        assert db.session.scalar(select(func.count(Comparison.id))) == 0
        assert db.session.scalar(select(func.count(Prompt.id))) == 0
        assert db.session.scalar(select(func.count(AuditEvent.id))) == 1  # the starter's activation only


@pytest.mark.parametrize("backend", BOTH_BACKENDS, indirect=True)
@pytest.mark.parametrize("latency", [2**63, 2**31, -1])
def test_an_impossible_latency_is_dropped_not_a_500(app, client, annotator, latency):
    from app.platform.extensions import db
    from app.tables import Preference

    c = client.post("/api/comparisons", json={"prompt": "be nicer"}, headers=annotator["headers"]).json
    body = {"candidate_id": c["candidates"][0]["id"], "latency_ms": latency}
    res = client.post(f"/api/comparisons/{c['id']}/answer", json=body, headers=annotator["headers"])
    assert res.status_code == 201
    with app.app_context():
        (pref,) = db.session.scalars(select(Preference)).all()
        assert pref.latency_ms is None and pref.chosen_candidate_id == body["candidate_id"]


# --- the policy in a real browser ------------------------------------------------------------------------------

# Records what the policy blocked, from before any page script runs.
RECORD_VIOLATIONS = ("window.__csp = []; document.addEventListener('securitypolicyviolation', "
                     "(e) => window.__csp.push(e.violatedDirective + ' ' + (e.blockedURI || e.sample)));")


def _add_run(db_url: str) -> None:
    from app import create_app
    from app.platform.extensions import db
    from app.tables import TrainingRun

    app = create_app({"SQLALCHEMY_DATABASE_URI": db_url, "REDIS_URL": None, "PREFETCH_SIZE": 0, "SECRET_KEY": "x"})
    with app.app_context():
        db.session.add(TrainingRun(id="run-1", requested_by="adm", status="succeeded",
                                   progress={"step": 2, "total_steps": 4, "history": []}))
        db.session.commit()
        db.session.remove()
        db.engine.dispose()


def admin_page(playwright, srv):
    """Chromium logged in as the live server's admin "adm", recording CSP violations and page errors."""
    from tests.test_browser import CHROMIUM, CHROMIUM_ARGS

    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
    page = browser.new_context().new_page()
    page.add_init_script(RECORD_VIOLATIONS)
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(srv.url("/auth/login"))
    page.fill("input[name=name]", "adm")
    page.fill("input[name=password]", srv.users["adm"]["password"])
    page.click("form button[type=submit]")
    page.wait_for_url(srv.url("/"))
    return browser, page, errors


@pytest.mark.slow
@pytest.mark.browser
def test_the_pages_run_under_the_policy_in_chromium(tmp_path, starter_dir):
    from playwright.sync_api import sync_playwright

    from tests.test_browser import CHROMIUM

    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    with live_server(tmp_path=tmp_path, starter_path=starter_dir["gpt2"], users={"adm": "admin"}, prompts=0,
                     env_extra={"PREFETCH_SIZE": "0"}) as srv, sync_playwright() as p:
        _add_run(srv.db_url)
        browser, page, errors = admin_page(p, srv)
        blocked = {}
        for path in ("/", "/admin/", "/admin/runs/run-1", "/ops/versions"):
            page.goto(srv.url(path))
            page.wait_for_load_state("networkidle")
            blocked[path] = page.evaluate("window.__csp")
        page.goto(srv.url("/admin/runs/run-1"))
        page.wait_for_load_state("networkidle")
        width = page.evaluate("document.getElementById('run-bar').style.width")
        # A script injected into the page does not run: the policy is really enforced.
        page.evaluate("() => { const s = document.createElement('script'); s.textContent = 'window.__ran = 1';"
                      " document.body.appendChild(s); }")
        injected = page.evaluate("[window.__ran === undefined, window.__csp.length]")
        browser.close()
    assert blocked == {path: [] for path in blocked} and not errors, (blocked, errors)
    assert width == "50%", width  # run.js drew the progress bar that the hashed inline style started at 0
    assert injected == [True, 1], injected


def test_flask_commands_say_the_generated_key_once(tmp_path):
    """The first command that makes the key says where it is; the ones after it keep quiet about it."""
    env = {**os.environ, "SECRET_KEY_FILE": str(tmp_path / "key"), "DATABASE_URL": f"sqlite:///{tmp_path / 'x.db'}",
           "FLASK_APP": "app:create_app", "REDIS_URL": "", "MODEL_STORE": str(tmp_path / "models")}
    env.pop("SECRET_KEY", None)
    env.pop("PREFLOOP_ENV", None)
    first = subprocess.run([sys.executable, "-m", "flask", "users", "list"], env=env, capture_output=True, text=True,
                           cwd=ROOT)
    second = subprocess.run([sys.executable, "-m", "flask", "users", "list"], env=env, capture_output=True, text=True,
                            cwd=ROOT)
    assert "SECRET_KEY is not set: generated the session key" in first.stderr
    assert "SECRET_KEY is not set" not in second.stderr


def test_the_favicon_is_served(client):
    res = client.get("/favicon.ico")
    assert res.status_code == 200 and res.mimetype == "image/svg+xml" and b"<svg" in res.data


def test_the_sqlite_database_is_private(tmp_path):
    """0600 in a 0700 folder, made so or made so again (it was 0644: password hashes and every annotation)."""
    from sqlalchemy import text

    from app import create_app
    from tests.conftest import make_config

    db_file = tmp_path / "instance" / "prefloop.db"
    create_app(make_config(backend="sqlite", tmp_path=tmp_path, SQLALCHEMY_DATABASE_URI=f"sqlite:///{db_file}"))
    assert stat.S_IMODE(db_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(db_file.parent.stat().st_mode) == 0o700
    db_file.chmod(0o644)
    create_app(make_config(backend="sqlite", tmp_path=tmp_path, SQLALCHEMY_DATABASE_URI=f"sqlite:///{db_file}"))
    assert stat.S_IMODE(db_file.stat().st_mode) == 0o600
    # A query string is not part of the file's name; an in-memory database has no file (the benches use one: it
    # was taken for a folder named "sqlite:").
    create_app(make_config(backend="sqlite", tmp_path=tmp_path,
                           SQLALCHEMY_DATABASE_URI=f"sqlite:///{tmp_path / 'q.db'}?timeout=5"))
    assert (tmp_path / "q.db").is_file() and not list(tmp_path.glob("q.db?*"))
    for memory in ("sqlite://", "sqlite:///:memory:"):
        with create_app(make_config(backend="sqlite", tmp_path=tmp_path,
                                    SQLALCHEMY_DATABASE_URI=memory)).app_context():
            from app.platform.extensions import db

            assert db.session.execute(text("select 1")).scalar() == 1


def test_inline_script_hashes():
    from app.accounts.security import inline_script_hashes

    page = ('<script src="/a.js"></script><script type="text/template"><%= x %></script>'
            "<script>var a = 1;</script>\n<SCRIPT type='text/javascript'>b()</SCRIPT>")
    expected = sorted("'sha256-" + base64.b64encode(hashlib.sha256(body).digest()).decode() + "'"
                      for body in (b"var a = 1;", b"b()"))
    assert inline_script_hashes(page) == expected


XSS = "<img src=x onerror=\"document.title='pwned'\">"


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.redis
def test_rq_dashboard_runs_its_own_scripts_but_no_job_text_in_chromium(tmp_path, starter_dir):
    """A failed job's exception carrying markup (stored XSS against admins under 'unsafe-inline'): the job page
    still renders by its own inline scripts, allowed by hash, and the markup's handler does not run."""
    import redis
    from playwright.sync_api import sync_playwright
    from rq import Queue, SimpleWorker

    from app.training.jobs import SERIALIZER
    from tests import services
    from tests.test_browser import CHROMIUM

    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed")
    conn = redis.Redis.from_url(services.redis_url())
    conn.flushdb()
    queue = Queue("training", connection=conn, serializer=SERIALIZER)
    queue.enqueue("builtins.int", XSS, job_id="run-xss")  # int() fails with the text in its message
    SimpleWorker([queue], connection=conn, serializer=SERIALIZER).work(burst=True)
    with live_server(tmp_path=tmp_path, starter_path=starter_dir["gpt2"], users={"adm": "admin"}, prompts=0,
                     env_extra={"PREFETCH_SIZE": "0", "REDIS_URL": services.redis_url()}) as srv, \
            sync_playwright() as p:
        browser, page, errors = admin_page(p, srv)
        page.goto(srv.url("/rq/0/view/job/run-xss"))
        page.wait_for_selector("pre.exc_info img", state="attached", timeout=30_000)  # drawn by its own script
        page.wait_for_timeout(500)
        shown = page.inner_text("pre.exc_info")
        title, blocked = page.evaluate("[document.title, window.__csp]")
        browser.close()
    conn.flushdb()
    assert "invalid literal for int()" in shown
    assert title != "pwned" and not errors, (title, errors)
    assert blocked == ["script-src-attr inline"] * len(blocked) and blocked, blocked  # only the smuggled handler
