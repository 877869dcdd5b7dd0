"""Blueprint: log in and out."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import login_required, login_user, logout_user

from app.extensions import db, login_manager
from app.tables import User
from app.users import check_login

bp = Blueprint("auth", __name__, url_prefix="/auth")
login_manager.login_view = "auth.login"


@login_manager.user_loader
def load_user(user_id: str) -> User | None:
    """Flask-Login's loader."""
    return db.session.get(User, int(user_id)) if user_id.isdigit() else None


@bp.route("/login", methods=["GET", "POST"])
def login():
    """Show the login form, or log in."""
    if request.method == "POST":
        user = check_login(name=request.form.get("name", ""), password=request.form.get("password", ""))
        if user:
            login_user(user, remember=True)
            target = request.args.get("next", "")
            safe = target.startswith("/") and not target.startswith("//")  # never redirect off-site
            return redirect(target if safe else url_for("annotate.index"))
        flash("Wrong name or password.", "error")
        return render_template("auth/login.html"), 401
    return render_template("auth/login.html")


@bp.post("/logout")
@login_required
def logout():
    """Log out."""
    logout_user()
    return redirect(url_for("auth.login"))
