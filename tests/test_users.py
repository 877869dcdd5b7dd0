"""Users: disable, enable, rotate tokens and list them (service and CLI), sessions that end, and the migration."""

from __future__ import annotations

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


@pytest.mark.parametrize("session_id", ["", "1", "1:", ":1", "x:1", "1:x", "١:١", "1:1:1", "9" * 40 + ":1"])
def test_malformed_session_ids_are_nobody(app, annotator, session_id):
    from app.accounts.users import user_for_session

    with app.app_context():
        assert user_for_session(session_id) is None


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
