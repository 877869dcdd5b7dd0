"""The one table per rule: roles and permissions and statuses (app/tables.py), as the views, the
templates and the database see them."""

from __future__ import annotations

import pytest
from sqlalchemy import CheckConstraint, inspect
from sqlalchemy.exc import IntegrityError

from app.tables import PERMISSIONS, ROLES, RUN_STATUSES, VERSION_STATUSES, ModelVersion, TrainingRun
from tests.services import BOTH_BACKENDS

EVERY_PERMISSION = sorted(set().union(*PERMISSIONS.values()))


def render_as(app, user_id: int | None, source: str, **context) -> str:
    """Render a template string in a request where `user_id` (None: nobody) is logged in."""
    from flask import render_template_string
    from flask_login import login_user

    from app.platform.extensions import db
    from app.tables import User

    with app.test_request_context("/"):
        if user_id is not None:
            login_user(db.session.get(User, user_id))
        return render_template_string(source, **context)


def test_cli_and_schema_read_the_one_table(app):
    from app.tables import User
    from app.web.cli import users_create

    role_option = next(p for p in users_create.params if p.name == "role")
    assert tuple(role_option.type.choices) == ROLES
    (check,) = [c for c in User.__table__.constraints if c.name == "ck_users_role"]
    assert str(check.sqltext) == "role in ('annotator','admin','operator')"


@pytest.mark.parametrize("role", ROLES)
def test_can_in_templates_matches_permissions(app, users, role):
    user = users.create(role[:3] + "x", role)
    source = "{% for p in permissions %}{{ p }}={{ can(p) }};{% endfor %}"
    rendered = render_as(app, user["id"], source, permissions=EVERY_PERMISSION)
    assert rendered == "".join(f"{p}={p in PERMISSIONS[role]};" for p in EVERY_PERMISSION)


def test_anonymous_can_nothing(app):
    rendered = render_as(app, None, "{{ can('annotate') }}{{ can('activate') }}")
    assert rendered == "FalseFalse"


@pytest.mark.parametrize("role", ROLES)
def test_nav_and_activate_buttons_follow_permissions(app, client, users, role):
    """The nav shows a link exactly when its page would be served; Activate/Roll back only to activators."""
    user = users.create(role[:3] + "x", role)
    users.login(client, user["name"])
    home = client.get("/").get_data(as_text=True)
    assert ('href="/admin/"' in home) == ("import" in PERMISSIONS[role])
    assert ('href="/ops/versions"' in home) == ("export" in PERMISSIONS[role])
    if "export" in PERMISSIONS[role]:
        versions = client.get("/ops/versions").get_data(as_text=True)
        assert ('id="rollback"' in versions) == ("activate" in PERMISSIONS[role])


def test_statuses_are_the_ones_code_assigns():
    assert "broken" not in VERSION_STATUSES
    assert not hasattr(ModelVersion, "note")
    from app.training.jobs import OPEN

    assert set(OPEN) < set(RUN_STATUSES)


@pytest.mark.parametrize("backend", BOTH_BACKENDS, indirect=True)
def test_the_database_refuses_unknown_statuses(app):
    from app.platform.extensions import db

    with app.app_context():
        for status in RUN_STATUSES:
            db.session.add(TrainingRun(id=f"run-{status}", requested_by="test", status=status))
        db.session.add(ModelVersion(id=2, path="p", arch="causal", base_model="b", status="rejected"))
        db.session.commit()
        for row in (TrainingRun(id="bad", requested_by="test", status="broken"),
                    ModelVersion(id=3, path="p", arch="causal", base_model="b", status="broken")):
            db.session.add(row)
            with pytest.raises(IntegrityError):
                db.session.commit()
            db.session.rollback()


@pytest.mark.parametrize("backend", BOTH_BACKENDS, indirect=True)
def test_migrations_match_the_tables(app):
    """No drift: autogenerate finds nothing to do, and every named CHECK in tables.py exists in the database
    (autogenerate does not compare CHECK constraints, so they are compared here)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from app.platform.extensions import db

    with app.app_context(), db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), db.metadata) == []
        inspector = inspect(conn)
        for table in db.metadata.sorted_tables:
            declared = {c.name for c in table.constraints if isinstance(c, CheckConstraint)}
            assert {c["name"] for c in inspector.get_check_constraints(table.name)} == declared, table.name
