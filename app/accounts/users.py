"""Users: create, check passwords, tokens and sessions, end sessions, disable, rotate tokens; guard views by role."""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from functools import cache, wraps

from flask import Flask, abort, current_app, g
from flask_login import current_user
from sqlalchemy import select, update
from werkzeug.security import check_password_hash, generate_password_hash

from app.platform.exceptions import BadInput
from app.platform.extensions import db
from app.tables import PERMISSIONS, ROLES, User


def hash_token(token: str) -> str:
    """sha256 of a bearer token (tokens are random, so no slow hash is needed)."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_user(*, name: str, role: str, password: str | None = None) -> tuple[User, str, str]:
    """Create a user; return (user, password, bearer token). Secrets are only shown once."""
    name = (name or "").strip() if isinstance(name, str) else ""
    if not name or len(name) > 64:
        raise BadInput("a name of 1 to 64 characters is required")
    # A name is a path segment of /api/users/<name>, and shown everywhere: no slash, no control character.
    if "/" in name or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise BadInput("a name cannot hold a slash or a control character")
    if role not in ROLES:
        raise BadInput(f"role must be one of {', '.join(ROLES)}")
    if db.session.scalar(select(User).where(User.name == name)):
        raise BadInput(f"user {name!r} already exists", status=409)
    password = password or secrets.token_urlsafe(9)
    token = secrets.token_urlsafe(24)
    user = User(name=name, role=role, password_hash=generate_password_hash(password), token_hash=hash_token(token))
    db.session.add(user)
    db.session.commit()
    return user, password, token


@cache
def dummy_hash() -> str:
    """A password hash that matches nothing, made once per process."""
    return generate_password_hash(secrets.token_urlsafe(16))


def check_login(*, name: str, password: str) -> User | None:
    """The user if the password matches and they are enabled, else None.

    An unknown name is checked against a dummy hash: otherwise it answers in 3 ms where a wrong password takes
    125 ms (scrypt), which tells anyone which names exist.
    """
    user = user_named(name)
    matches = check_password_hash(user.password_hash if user else dummy_hash(), password)
    return user if user and matches and not user.disabled else None


def user_named(name: str) -> User | None:
    """The user called `name`, or None (also for a name no account can have)."""
    # Such a name (a NUL was a 500 on PostgreSQL) is simply unknown.
    if not (isinstance(name, str) and 0 < len(name) <= 64 and not any(ord(c) < 32 or ord(c) == 127 for c in name)):
        return None
    return db.session.scalar(select(User).where(User.name == name))


def user_for_token(token: str) -> User | None:
    """The enabled user owning a bearer token, or None."""
    user = db.session.scalar(select(User).where(User.token_hash == hash_token(token)))
    return user if user and not user.disabled else None


def user_for_session(session_id: str) -> User | None:
    """The user a session or remember cookie names (User.get_id), unless that session has since been ended or is
    older than REMEMBER_COOKIE_DURATION (the cookie's own expiry is the browser's to keep, or not)."""
    match = re.fullmatch(r"([0-9]{1,10}):([0-9]{1,10}):([0-9]{1,12})", session_id or "")
    if not match:
        return None  # also a cookie from before session versions, or before issue times: log in again
    age = time.time() - int(match[3])
    if not -60 <= age <= current_app.config["REMEMBER_COOKIE_DURATION"].total_seconds():
        return None
    user = db.session.get(User, int(match[1]))
    if user is None or user.disabled or user.session_version != int(match[2]):
        return None
    return user


def end_sessions(*, user_id: int, commit: bool = True) -> None:
    """End every session and remember cookie of the user (in one UPDATE, so concurrent ends both count)."""
    db.session.execute(update(User).where(User.id == user_id).values(session_version=User.session_version + 1))
    if commit:
        db.session.commit()


def find_user(*, name: str | None = None, user_id: int | None = None) -> User:
    """The user called `name` (or with id `user_id`), or a 404 BadInput."""
    if user_id is not None:
        user = db.session.get(User, user_id) if 1 <= user_id <= 2**31 - 1 else None
    elif not name or len(name) > 64 or any(ord(c) < 32 or ord(c) == 127 for c in name):
        user = None  # no account has such a name (and PostgreSQL refuses a NUL in a query)
    else:
        user = db.session.scalar(select(User).where(User.name == name))
    if user is None:
        raise BadInput(f"no user {name if user_id is None else user_id!r}", status=404)
    return user


def set_disabled(*, name: str, disabled: bool) -> User:
    """Disable a user (their sessions, remember cookies and token stop working at once) or enable them again.

    Enabling does not bring old sessions back: the version raised at disable has already ended them.
    """
    user = find_user(name=name)
    user.disabled = disabled
    if disabled:
        end_sessions(user_id=user.id, commit=False)
    db.session.commit()
    return user


def rotate_token(*, name: str) -> str:
    """Give the user a new bearer token (the old one stops working) and return it; it is shown once."""
    user = find_user(name=name)
    token = secrets.token_urlsafe(24)
    user.token_hash = hash_token(token)
    db.session.commit()
    return token


def check_may_manage(*, actor: User, target: User | None, role: str | None = None) -> None:
    """Who may change whom, from the admin page and the API: nobody their own account (a slip would lock them out),
    and only an operator an operator, or anyone into one (an admin must not make themselves more)."""
    if target is not None and target.id == actor.id:
        raise BadInput("you cannot change your own account here; ask another admin", status=403)
    touches_operator = role == "operator" or (target is not None and target.role == "operator")
    if touches_operator and actor.role != "operator":
        raise BadInput("only an operator can create, change or disable an operator", status=403)


def add_user(*, actor: User, name: str, role: str) -> tuple[User, str, str]:
    """create_user for the admin page and the API, within what the actor may do; audited."""
    if role not in ROLES:
        raise BadInput(f"role must be one of {', '.join(ROLES)}")
    check_may_manage(actor=actor, target=None, role=role)
    user, password, token = create_user(name=name, role=role)
    audit_user(actor=actor, action="user_created", user=user, detail={"role": role})
    return user, password, token


def change_user(*, actor: User, name: str, role: str | None = None, disabled: bool | None = None) -> User:
    """Change a user's role, or disable or enable them, within what the actor may do; audited."""
    user = find_user(name=name)
    if role is not None and role not in ROLES:
        raise BadInput(f"role must be one of {', '.join(ROLES)}")
    check_may_manage(actor=actor, target=user, role=role)
    before = {"role": user.role, "disabled": user.disabled}
    if role is not None:
        user.role = role
    if disabled is not None:
        set_disabled(name=name, disabled=disabled)
    db.session.commit()
    after = {"role": user.role, "disabled": user.disabled}
    if after != before:
        audit_user(actor=actor, action="user_changed", user=user, detail={"before": before, "after": after})
    return user


def new_token(*, actor: User, name: str) -> str:
    """rotate_token within what the actor may do; audited (the token itself never is). Whoever rotates holds the new
    token, so an admin's is rotated by an operator only: another admin could act in their name with it."""
    target = find_user(name=name)
    check_may_manage(actor=actor, target=target)
    if target.role == "admin" and actor.role != "operator":
        raise BadInput("only an operator can give an admin a new token (whoever rotates it holds it)", status=403)
    token = rotate_token(name=name)
    audit_user(actor=actor, action="user_token_rotated", user=find_user(name=name), detail={})
    return token


def audit_user(*, actor: User, action: str, user: User, detail: dict) -> None:
    """An audit row for a change to an account."""
    from app.versions.registry import record_event

    record_event(actor=actor.name, action=action, detail={"user": user.name, **detail})


def list_users() -> list[User]:
    """Every user, by name."""
    return list(db.session.scalars(select(User).order_by(User.name)))


def can(user, permission: str) -> bool:
    """Whether the user is logged in and their role grants the permission (app.tables.PERMISSIONS)."""
    return bool(user and getattr(user, "is_authenticated", False) and permission in PERMISSIONS.get(user.role, ()))


def acting_user():
    """The API's bearer user, else the logged-in browser user."""
    return getattr(g, "api_user", None) or current_user


def require(permission: str):
    """View decorator: 401 when anonymous, 403 when the role lacks the permission."""

    def decorator(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            user = acting_user()
            if not getattr(user, "is_authenticated", False):
                abort(401)
            if not can(user, permission):
                abort(403)
            return view(*args, **kwargs)

        return wrapped

    return decorator


def init_app(app: Flask) -> None:
    """Templates ask `can('retrain')` for the acting user instead of comparing role strings."""

    @app.context_processor
    def permissions():
        return {"can": lambda permission: can(acting_user(), permission)}
