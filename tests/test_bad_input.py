"""Bad input gets a clear 4xx, is stored nowhere, and anything shown is escaped."""

import pytest
from sqlalchemy import func, select

from app.extensions import db
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
