"""Users: disable, enable, rotate tokens and list them (service and CLI), sessions that end, and the migration."""

from __future__ import annotations

import re
import time

import pytest
from sqlalchemy import inspect

from tests.services import BOTH_BACKENDS


def test_list_disable_enable_from_the_cli(app, runner, client, users, annotator):
    users.create("zed", "operator")
    assert runner.invoke(args=["users", "list"]).output.split() == ["ann", "annotator", "enabled",
                                                                    "zed", "operator", "enabled"]
    res = runner.invoke(args=["users", "disable", "ann"])
    assert res.exit_code == 0 and "ann is disabled" in res.output
    assert runner.invoke(args=["users", "list"]).output.splitlines()[0].split() == ["ann", "annotator", "disabled"]
    assert client.get("/api/comparisons/999999", headers=annotator["headers"]).status_code == 401
    assert users.login(client, "ann").status_code == 401
    res = runner.invoke(args=["users", "enable", "ann"])
    assert res.exit_code == 0 and "ann is enabled" in res.output
    assert client.get("/api/comparisons/999999", headers=annotator["headers"]).status_code == 404
    assert users.login(client, "ann").status_code == 302


def test_rotate_token_prints_a_new_one_and_ends_the_old(app, runner, client, annotator):
    res = runner.invoke(args=["users", "rotate-token", "ann"])
    assert res.exit_code == 0
    (token,) = [line.removeprefix("token: ") for line in res.output.splitlines() if line.startswith("token: ")]
    assert token != annotator["token"]
    assert client.get("/api/comparisons/999999", headers=annotator["headers"]).status_code == 401
    assert client.get("/api/comparisons/999999", headers={"Authorization": f"Bearer {token}"}).status_code == 404


@pytest.mark.parametrize("command", ["disable", "enable", "rotate-token"])
def test_unknown_names_are_a_clear_error(app, runner, command):
    res = runner.invoke(args=["users", command, "nobody"])
    assert res.exit_code == 2 and "no user 'nobody'" in res.output


def test_sessions_end_at_disable_and_stay_ended(app, annotator):
    from app.accounts.users import end_sessions, set_disabled, user_for_session
    from app.platform.extensions import db
    from app.tables import User

    with app.app_context():
        session_id = db.session.get(User, annotator["id"]).get_id()
        assert user_for_session(session_id).name == "ann"
        set_disabled(name="ann", disabled=True)
        assert user_for_session(session_id) is None
        set_disabled(name="ann", disabled=False)
        assert user_for_session(session_id) is None  # enabling does not revive it
        fresh = db.session.get(User, annotator["id"]).get_id()
        assert user_for_session(fresh).name == "ann"
        end_sessions(user_id=annotator["id"])
        assert user_for_session(fresh) is None


@pytest.mark.parametrize("session_id", ["", "1", "1:", ":1", "x:1", "1:x", "١:١", "1:1", "1:1:1", "9" * 40 + ":1",
                                        "1:1:x", "1:1:" + "9" * 13, "1:1:99999999999"])
def test_malformed_session_ids_are_nobody(app, annotator, session_id):
    from app.accounts.users import user_for_session

    with app.app_context():
        assert user_for_session(session_id) is None


def test_sessions_and_remember_cookies_expire_on_the_server(app, client, annotator):
    """A remember cookie works for REMEMBER_COOKIE_DURATION from the login, then not, whatever the browser keeps
    (it had no server-side expiry: a copied cookie worked until the next logout)."""
    from datetime import timedelta

    page = client.get("/auth/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    client.post("/auth/login", data={"name": "ann", "password": annotator["password"], "remember": "on",
                                     "csrf_token": token})
    remember = client.get_cookie("remember_token")
    assert remember is not None
    kept = app.test_client()
    kept.set_cookie("remember_token", remember.value)
    assert kept.get("/").status_code == 200  # the cookie alone logs in
    app.config["REMEMBER_COOKIE_DURATION"] = timedelta(seconds=1)
    time.sleep(2.1)
    for c in (app.test_client(), client):  # the remember cookie alone, and the session it made
        if c is not client:
            c.set_cookie("remember_token", remember.value)
        res = c.get("/")
        assert res.status_code == 302 and "/auth/login" in res.headers["Location"]


@pytest.mark.parametrize("backend", BOTH_BACKENDS, indirect=True)
def test_the_migration_adds_and_removes_the_columns(app, annotator):
    """Down to the revision before, the user stays without the columns; up again, they are enabled at version 1."""
    from flask_migrate import downgrade, upgrade

    from app.platform.extensions import db

    def columns() -> set[str]:
        with db.engine.connect() as conn:
            return {c["name"] for c in inspect(conn).get_columns("users")}

    with app.app_context():
        db.session.remove()
        downgrade(revision="5b1e0c9d4f2a")
        assert not {"session_version", "disabled"} & columns()
        upgrade()
        assert {"session_version", "disabled"} <= columns()
        from app.tables import User

        user = db.session.get(User, annotator["id"])
        assert (user.name, user.session_version, user.disabled) == ("ann", 1, False)


# People in the app: the API (the admin page's forms call the same services) ----------------------------------


def test_an_admin_creates_changes_disables_and_rotates_through_the_api(app, client, admin):
    created = client.post("/api/users", json={"name": "newbie", "role": "annotator"}, headers=admin["headers"])
    assert created.status_code == 201 and set(created.json) == {"name", "role", "password", "token"}
    token = {"Authorization": f"Bearer {created.json['token']}"}
    assert client.get("/api/progress", headers=token).status_code == 200
    res = client.post("/api/users/newbie/token", headers=admin["headers"])
    assert res.status_code == 200 and client.get("/api/progress", headers=token).status_code == 401
    token = {"Authorization": f"Bearer {res.json['token']}"}
    assert client.get("/api/progress", headers=token).status_code == 200
    res = client.patch("/api/users/newbie", json={"role": "admin"}, headers=admin["headers"])
    assert res.status_code == 200 and res.json == {"name": "newbie", "role": "admin", "disabled": False}
    assert client.patch("/api/users/newbie", json={"disabled": True}, headers=admin["headers"]).json["disabled"]
    assert client.get("/api/progress", headers=token).status_code == 401
    with app.app_context():
        from app.versions.registry import audit_log

        events = [(e.action, e.actor, e.detail.get("user")) for e in audit_log(kind="people")]
    assert events == [("user_changed", "adm", "newbie"), ("user_changed", "adm", "newbie"),
                      ("user_token_rotated", "adm", "newbie"), ("user_created", "adm", "newbie")]
    assert all("token" not in str(e) or "rotated" in str(e) for e in events)


@pytest.mark.parametrize(("method", "path", "body", "status", "words"), [
    ("post", "/api/users", {"name": "boss", "role": "operator"}, 403, "only an operator"),
    ("patch", "/api/users/opr", {"disabled": True}, 403, "only an operator"),
    ("post", "/api/users/opr/token", {}, 403, "only an operator"),
    ("patch", "/api/users/adm", {"role": "annotator"}, 403, "your own account"),
    ("patch", "/api/users/ghost", {"disabled": True}, 404, "no user"),
    ("patch", "/api/users/a%00b", {"disabled": True}, 404, "no user"),
    ("post", "/api/users/adm2/token", {}, 403, "only an operator can give an admin a new token"),
    ("post", "/api/users", {"name": "a/b", "role": "annotator"}, 400, "slash"),
    ("post", "/api/users", {"name": "ann", "role": "annotator"}, 409, "already exists"),
    ("post", "/api/users", {"name": "x", "role": "king"}, 400, "role"),
    ("patch", "/api/users/ann", {"disabled": "yes"}, 400, "disabled"),
])
def test_what_an_admin_may_not_do_to_accounts(client, admin, annotator, operator, users, method, path, body, status,
                                               words):
    users.create("adm2", "admin")
    res = getattr(client, method)(path, json=body, headers=admin["headers"])
    assert res.status_code == status and words in res.json["error"], res.json


def test_an_operator_manages_operators(client, operator, admin):
    res = client.post("/api/users", json={"name": "op2", "role": "operator"}, headers=operator["headers"])
    assert res.status_code == 201
    assert client.patch("/api/users/adm", json={"role": "operator"}, headers=operator["headers"]).status_code == 200
