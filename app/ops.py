"""Blueprint: model versions and the audit log, for operators."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template
from flask_login import login_required

from app.registry import active_version_id, audit_log, list_versions
from app.serving import get_holder
from app.users import require

bp = Blueprint("ops", __name__, url_prefix="/ops")


@bp.get("/versions")
@login_required
@require("export")
def versions():
    """Lineage, metrics and the audit log."""
    return render_template(
        "ops/versions.html",
        versions=list_versions(),
        active_id=active_version_id(),
        events=audit_log(),
        serving=get_holder(current_app._get_current_object()).status(),
    )
