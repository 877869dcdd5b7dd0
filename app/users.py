"""Users: create with a role, check passwords and bearer tokens, and guard views by permission (app/roles.py)."""

from __future__ import annotations

import hashlib
import secrets
from functools import wraps

from flask import abort, g
from flask_login import current_user
from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from app.extensions import db
from app.roles import ROLES, can
from app.tables import User
from app.validation import BadInput


def hash_token(token: str) -> str:
    """sha256 of a bearer token (tokens are random, so no slow hash is needed)."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_user(*, name: str, role: str, password: str | None = None) -> tuple[User, str, str]:
    """Create a user; return (user, password, bearer token). Secrets are only shown once."""
    name = (name or "").strip()
    if not name or len(name) > 64:
        raise BadInput("a name of 1 to 64 characters is required")
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


def check_login(*, name: str, password: str) -> User | None:
    """The user if the password matches, else None."""
    user = db.session.scalar(select(User).where(User.name == name))
    if user and check_password_hash(user.password_hash, password):
        return user
    return None


def user_for_token(token: str) -> User | None:
    """The user owning a bearer token, or None."""
    return db.session.scalar(select(User).where(User.token_hash == hash_token(token)))


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
