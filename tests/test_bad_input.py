"""Bad input gets a clear 4xx, is stored nowhere, and anything shown is escaped."""

import pytest
from sqlalchemy import func, select

from app.platform.extensions import db
from app.tables import Comparison, Prompt
from tests.services import BOTH_BACKENDS

pytestmark = pytest.mark.parametrize("backend", BOTH_BACKENDS, indirect=True)


def count(app, table):
    with app.app_context():
        return db.session.scalar(select(func.count(table.id)))


@pytest.mark.parametrize("prompt,status", [
    ("", 400),
    ("   \n\t ", 400),
    ("x" * 100_000, 413),
    ("nul \x00 byte", 400),
    (12, 400),
    (None, None),  # null means "next from pool"; the pool is empty here
])
def test_bad_prompts(app, client, annotator, prompt, status):
    res = client.post("/api/comparisons", json={"prompt": prompt}, headers=annotator["headers"])
    assert res.status_code == (status or 404)
    assert res.json["error"]
    assert count(app, Comparison) == 0


def test_non_utf8_body(app, client, annotator):
    res = client.post("/api/comparisons", data=b'{"prompt": "\xff\xfe bad"}', headers=annotator["headers"],
                      content_type="application/json")
    assert res.status_code == 400 and "JSON" in res.json["error"]
    assert count(app, Comparison) == 0


def test_non_object_body(client, annotator):
    res = client.post("/api/comparisons", json=["a"], headers=annotator["headers"])
    assert res.status_code == 400


def test_oversized_request_body(client, annotator, app):
    app.config["MAX_CONTENT_LENGTH"] = 1000
    res = client.post("/api/comparisons", json={"prompt": "y" * 5000}, headers=annotator["headers"])
    assert res.status_code == 413


def test_html_is_shown_escaped(app, client, users, annotator):
    nasty = "<script>alert(1)</script><b>bold</b> send the report"
    res = client.post("/api/comparisons", json={"prompt": nasty}, headers=annotator["headers"])
    assert res.status_code == 201 and res.json["prompt"] == nasty  # stored and returned verbatim, as data
    users.login(client, "ann")
    page = client.get("/").get_data(as_text=True)
    # The pending comparison is embedded as JSON; the page never contains the raw tag.
    assert "<script>alert(1)" not in page
    assert "\\u003cscript\\u003e" in page


def test_bad_upload_imports_nothing(app, client, users, admin):
    users.login(client, "adm")
    import re

    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/admin/").get_data(as_text=True)).group(1)
    from io import BytesIO

    bad = b"prompt\nfine one\n\xff\xfe broken\n"
    res = client.post("/admin/prompts", data={"csrf_token": token, "file": (BytesIO(bad), "p.csv")},
                      follow_redirects=True)
    assert "Nothing imported" in res.get_data(as_text=True)
    assert count(app, Prompt) == 0
    res = client.post("/admin/prompts", data={"file": (BytesIO(b"prompt\nok\n"), "p.csv")})
    assert res.status_code == 400  # no CSRF token
    assert count(app, Prompt) == 0


def table_counts(app) -> dict:
    """Rows in every table, to prove a refused request stored nothing anywhere."""
    with app.app_context():
        return {t.name: db.session.execute(select(func.count()).select_from(t)).scalar_one()
                for t in db.metadata.sorted_tables}


# Every mutating API route (operator token: every permission), with bodies that are wrong in each way.
BAD_BODIES = [
    ("/api/comparisons", [b"\xff\xfe", b"[1]", b'{"prompt": 5}', b'{"prompt": ["a"]}', b'{"other": 1}']),
    ("/api/comparisons/{cid}/answer", [b"\xff\xfe", b"[]", b'{"candidate_id": "x"}', b'{"candidate_id": 999999}',
                                      b'{"verdict": "great"}', b"{}", b'{"candidate_id": true}']),
    ("/api/prompts", [b"\xff\xfe", b'{"prompts": "one"}', b'{"prompts": [1, 2]}', b'{"prompts": [""]}', b"{}"]),
    ("/api/training-runs", [b"\xff\xfe", b'{"beta": "x"}', b'{"epochs": -1}', b'{"lora": 1}', b'{"x": 1}']),
    ("/api/model-versions/1/activate", [b"\xff\xfe", b"{}", b'{"reason": 5}', b'{"reason": "   "}']),
]


@pytest.mark.parametrize(("path", "bodies"), BAD_BODIES, ids=[p for p, _ in BAD_BODIES])
def test_every_write_endpoint_refuses_bad_bodies_and_stores_nothing(app, client, users, path, bodies):
    operator = users.create("opr", "operator")
    app.config["TRAIN_MIN_PAIRS"] = 0  # so Retrain reaches its body checks even with no clicks
    comp = client.post("/api/comparisons", json={"prompt": "Close the door."}, headers=operator["headers"]).json
    before = table_counts(app)
    for body in bodies:
        res = client.post(path.format(cid=comp["id"]), data=body, content_type="application/json",
                          headers=operator["headers"])
        assert 400 <= res.status_code < 500, (path, body, res.status_code)
        assert res.json["error"], (path, body)
        assert table_counts(app) == before, (path, body)


@pytest.mark.parametrize("path", ["/api/comparisons/999999/answer", "/api/comparisons/999999/undo",
                                  "/api/comparisons/0/answer", "/api/comparisons/-1/answer",
                                  "/api/comparisons/99999999999999999999/answer", "/api/model-versions/999/activate",
                                  "/api/comparisons/abc/answer", "/api/training-runs/nope"])
def test_unknown_ids_are_404(app, client, users, path):
    operator = users.create("opr", "operator")
    res = (client.get if path.startswith("/api/training-runs") else client.post)(
        path, json={"verdict": "skip", "reason": "x"}, headers=operator["headers"])
    assert res.status_code == 404 and res.json["error"]


# Second hardening round (issue 30): each of these was a 500 (or a leak) before.


def test_json_nested_too_deep_is_a_400(client, admin):
    res = client.post("/api/comparisons", data="[" * 100_000, content_type="application/json",
                      headers=admin["headers"])
    assert res.status_code == 400 and "nested too deeply" in res.json["error"]
    nested: list = ["Fix it."]
    for _ in range(900):
        nested = [nested]
    for path, body in (("/api/prompts", {"prompts": nested}), ("/api/comparisons", {"prompt": nested})):
        res = client.post(path, json=body, headers=admin["headers"])
        assert res.status_code == 400, (path, res.status_code)


def test_nul_bytes_are_clear_errors_on_every_backend(app, client, users, admin, operator):
    import io
    import re

    page = client.get("/auth/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    res = client.post("/auth/login", data={"name": "pgadm\x00", "password": "x", "csrf_token": token})
    assert res.status_code == 401
    assert client.get("/api/training-runs/abc%00def", headers=admin["headers"]).status_code == 404
    res = client.post("/api/model-versions/1/activate", json={"reason": "why\u0000"}, headers=operator["headers"])
    assert res.status_code == 400 and "NUL" in res.json["error"]
    users.login(client, admin["name"])
    assert client.get("/admin/runs/abc%00def").status_code == 404
    page = client.get("/admin/").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    res = client.post("/admin/prompts", data={"csrf_token": token, "file": (io.BytesIO(b"prompt\nFix it.\n"),
                                                                            "bad\x00name" + "x" * 300 + ".csv")},
                      content_type="multipart/form-data", follow_redirects=True)
    assert res.status_code == 200 and "Imported 1 prompts" in res.get_data(as_text=True)
    with app.app_context():
        source = db.session.scalar(select(Prompt.source))
    assert "\x00" not in source and len(source) <= 128


def test_the_prompt_list_is_capped(app, client, admin):
    res = client.post("/api/prompts", json={"prompts": [f"p{i}" for i in range(10_001)]}, headers=admin["headers"])
    assert res.status_code == 400 and count(app, Prompt) == 0


def test_a_csrf_token_from_before_login_stops_working_after_it(client, users, admin):
    import re

    page = client.get("/auth/login").get_data(as_text=True)
    before = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    res = client.post("/auth/login", data={"name": admin["name"], "password": "pw", "csrf_token": before})
    assert res.status_code == 302
    res = client.post("/admin/retrain", data={"csrf_token": before})
    assert res.status_code == 400 and "CSRF" in res.get_data(as_text=True)


def test_an_operator_cannot_see_the_versions_of_a_battle_that_may_be_theirs_next(app, client, operator, starter_dir):
    """A prefetched battle nobody holds yet: its versions stay hidden, even from an operator."""
    from app.arena.battles import generate_battles
    from app.versions.serving import get_holder
    from tests.conftest import install_child

    install_child(app, starter_dir["gpt2"], number=2, parent=1)
    with app.app_context():
        [battle] = generate_battles(holder=get_holder(app), pair=(1, 2), inputs=[("Fix it.", None)], user_id=None)
        db.session.commit()
        battle_id = battle.id
    res = client.get(f"/api/arena/battles/{battle_id}", headers=operator["headers"])
    assert res.status_code == 200 and all("version_id" not in c for c in res.json["candidates"])


def raw(srv, method: str, path: str, *, token: str | None = None, data: bytes | None = None,
        content_type: str = "application/json") -> int:
    """One request with a raw body (and a bearer token); returns the status."""
    import urllib.error
    import urllib.request

    headers = {"Content-Type": content_type} | ({"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(urllib.request.Request(srv.url(path), data=data, method=method, headers=headers),
                                    timeout=60) as res:
            return res.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.slow
@pytest.mark.redis
def test_live_the_audit_probes_get_4xx_never_5xx(tmp_path, starter_dir, backend):
    """The second audit's 5xx probes, sent to real gunicorn (with Redis, so the dashboard is mounted) on each
    backend: deep JSON, NUL in every door text enters by, the uncapped prompt list, and rq-dashboard's unknowns."""
    import json
    import re
    import urllib.error
    import urllib.request

    import redis

    from harness.live import live_server
    from tests import services
    from tests.test_auth import LiveClient

    redis.Redis.from_url(services.redis_url()).flushdb()
    env = {"REDIS_URL": services.redis_url(), "PREFETCH_SIZE": "0", **services.live_database(backend)}
    with live_server(tmp_path=tmp_path, starter_path=starter_dir["gpt2"], env_extra=env, prompts=0,
                     users={"adm": "admin", "opr": "operator"}) as srv:
        adm, opr = srv.users["adm"]["token"], srv.users["opr"]["token"]
        nested: list = ["Fix it."]
        for _ in range(900):
            nested = [nested]
        seen = {
            "deep JSON": raw(srv, "POST", "/api/comparisons", token=adm, data=b"[" * 100_000),
            "deep prompt list": raw(srv, "POST", "/api/prompts", token=adm, data=json.dumps({"prompts": nested})
                                    .encode()),
            "deep typed prompt": raw(srv, "POST", "/api/comparisons", token=adm, data=json.dumps({"prompt": nested})
                                     .encode()),
            "NUL in a run id": raw(srv, "GET", "/api/training-runs/abc%00def", token=adm),
            "NUL in a reason": raw(srv, "POST", "/api/model-versions/1/activate", token=opr,
                                   data=json.dumps({"reason": "why\u0000"}).encode()),
            "10,001 prompts": raw(srv, "POST", "/api/prompts", token=adm,
                                  data=json.dumps({"prompts": [f"p{i}" for i in range(10_001)]}).encode()),
        }
        stranger = LiveClient(srv)
        seen["NUL in a login name"] = stranger.login("pgadm\x00", "x")[0]
        browser = LiveClient(srv)
        assert browser.login("adm", srv.users["adm"]["password"])[0] == 302
        seen["NUL in an admin run page"] = browser.request("/admin/runs/abc%00def")[0]
        for path in ("/rq/0/view/job/nonexistent", "/rq/0/data/job/x.json", "/rq/7/view",
                     "/rq/0/data/jobs/training/failed/10/asc/99999999999999999999.json"):
            seen[path] = browser.request(path)[0]
        token = re.search(r'name="csrf_token" value="([^"]+)"', browser.request("/admin/")[2]).group(1)
        boundary = "prefloopboundary"
        body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\n{token}\r\n"
                f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"bad\x00name.csv\"\r\n"
                f"Content-Type: text/csv\r\n\r\nprompt\nFix it.\n\r\n--{boundary}--\r\n").encode()
        req = urllib.request.Request(
            srv.url("/admin/prompts"), data=body, method="POST",
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        try:
            with browser.opener.open(req, timeout=60) as res:
                seen["NUL in an upload's file name"] = res.status
        except urllib.error.HTTPError as exc:
            seen["NUL in an upload's file name"] = exc.code
        log = srv.log_tail(400)
    assert seen == {
        "deep JSON": 400, "deep prompt list": 400, "deep typed prompt": 400, "NUL in a run id": 404,
        "NUL in a reason": 400, "10,001 prompts": 400, "NUL in a login name": 401, "NUL in an admin run page": 404,
        "/rq/0/view/job/nonexistent": 404, "/rq/0/data/job/x.json": 404, "/rq/7/view": 404,
        "/rq/0/data/jobs/training/failed/10/asc/99999999999999999999.json": 404,
        "NUL in an upload's file name": 302,  # imported, then sent back to the admin page
    }, seen
    assert "Traceback" not in log, log[-3000:]
