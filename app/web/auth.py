"""Blueprint: log in and out."""

from __future__ import annotations

import unicodedata
from urllib.parse import urlsplit

from flask import Blueprint, current_app, flash, redirect, render_template, request, session, url_for
from flask_login import current_user, login_required, login_user, logout_user

from app.accounts.security import known_device, login_backstop_key, login_name_key, set_device_cookie
from app.accounts.users import check_login, end_sessions, user_for_session
from app.platform.extensions import limiter, login_manager

bp = Blueprint("auth", __name__, url_prefix="/auth")
login_manager.login_view = "auth.login"


@login_manager.user_loader
def load_user(session_id: str):
    """Flask-Login's loader, for the session and the remember cookie alike (see User.get_id)."""
    return user_for_session(session_id)


def local_target(target: str | None) -> str | None:
    """`target` if it is a path on this site, else None.

    Browsers drop tabs and newlines from a URL and read a backslash as a slash, so "/\\t/evil" and "/\\\\evil" go
    to //evil; a target with any scheme, host, backslash or control character is refused, not repaired.
    """
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return None
    if any(unicodedata.category(c).startswith("C") for c in target):
        return None
    parts = urlsplit(target)
    return None if parts.scheme or parts.netloc else target


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["LOGIN_LIMIT"], key_func=login_name_key, methods=["POST"],
               scope="login-name")
@limiter.limit(lambda: current_app.config["LOGIN_NAME_LIMIT"], key_func=login_backstop_key, methods=["POST"],
               scope="login-backstop", exempt_when=lambda: known_device() is not None)
@limiter.limit(lambda: current_app.config["LOGIN_ADDRESS_LIMIT"], methods=["POST"], scope="login-address")
def login():
    """Show the login form, or log in."""
    if request.method == "POST":
        user = check_login(name=request.form.get("name", ""), password=request.form.get("password", ""))
        if user:
            login_user(user, remember=request.form.get("remember") == "on")
            # A new CSRF token for the new session: one from before the login (a planted page's) stops working.
            session.pop("csrf_token", None)
            return set_device_cookie(redirect(local_target(request.args.get("next")) or url_for("annotate.index")),
                                     user_id=user.id)
        flash("Wrong name or password.", "error")
        return render_template("auth/login.html"), 401
    if current_user.is_authenticated:  # e.g. Back to the login page after logging in
        return redirect(local_target(request.args.get("next")) or url_for("annotate.index"))
    return render_template("auth/login.html")


@bp.post("/logout")
@login_required
def logout():
    """Log out: every session and remember cookie of this user stops working, here and elsewhere."""
    end_sessions(user_id=current_user.id)
    logout_user()
    return redirect(url_for("auth.login"))
