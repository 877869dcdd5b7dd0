"""prefloop: people, not a reward model, steer a text generator."""

from __future__ import annotations

from flask import Flask
from werkzeug.routing import IntegerConverter

from app.platform.config import Config, check_nodes, resolve_secret_key


class IdConverter(IntegerConverter):
    """A row id in URLs: 1 to 2**31-1, the range of an INTEGER key on Postgres; anything else is a plain 404."""

    def __init__(self, map, *args, **kwargs) -> None:  # noqa: A002 - werkzeug's argument name
        super().__init__(map, min=1, max=2**31 - 1)


def create_app(config: Config | dict | None = None) -> Flask:
    """Build the app: config, then extensions, then blueprints. Nothing heavy runs here."""
    app = Flask(__name__, template_folder="../templates", static_folder="../static")
    app.url_map.converters["id"] = IdConverter
    app.config.from_object(Config())
    if isinstance(config, dict):
        app.config.update(config)
    elif config is not None:
        app.config.from_object(config)
    check_nodes(app.config)
    app.config["SECRET_KEY"] = resolve_secret_key(app.config, app.logger)

    from app.accounts import security, users
    from app.platform import database
    from app.platform.extensions import csrf, db, login_manager, migrate
    from app.web import errors

    db.init_app(app)
    migrate.init_app(app, db, directory=str(app.config.get("MIGRATIONS_DIR", _migrations_dir())))
    csrf.init_app(app)
    login_manager.init_app(app)
    database.init_app(app)
    errors.init_app(app)
    users.init_app(app)
    security.init_app(app)

    from app.web import admin, annotate, api, auth, cli, ops

    for module in (auth, annotate, admin, ops, api):
        app.register_blueprint(module.bp)
    csrf.exempt(api.bp)  # the API checks CSRF itself when a browser session (not a token) calls it
    cli.init_app(app)
    _mount_rq_dashboard(app)
    if app.config["PROXY_HOPS"]:
        from werkzeug.middleware.proxy_fix import ProxyFix

        # Behind a reverse proxy every request comes from the proxy's address: the per-address login limit and
        # the logs need the client's, from X-Forwarded-For, trusted only for the hops configured. The host is not
        # taken from a header (a default nginx passes a client's X-Forwarded-Host through).
        hops = app.config["PROXY_HOPS"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=0)
    return app


# The dashboard's read-only views. Its other routes (requeue, delete, empty, compact) change the queue, and one of
# them (requeue) answers GET, which no CSRF check sees: a link could re-run a failed training run. They are refused.
RQ_DASHBOARD_READ_ONLY = frozenset({
    "static", "favicon", "queues_overview", "workers_overview", "jobs_overview", "job_view",
    "list_queues", "list_jobs", "job_info", "list_workers",
})


def _mount_rq_dashboard(app: Flask) -> None:
    """rq-dashboard at /rq/ for admins, read-only; only where Redis is configured."""
    if not app.config.get("REDIS_URL"):
        return
    import rq_dashboard
    from flask import abort, redirect, request, url_for
    from flask_login import current_user
    from rq.exceptions import NoSuchJobError

    from app.accounts.users import can
    from app.training.jobs import SERIALIZER
    from app.web.errors import error_response

    app.config.setdefault("RQ_DASHBOARD_REDIS_URL", app.config["REDIS_URL"])
    rq_dashboard.web.setup_rq_connection(app)
    rq_dashboard.web.config.serializer = SERIALIZER  # the training queue's jobs are JSON (app/training/jobs.py)
    app.register_blueprint(rq_dashboard.blueprint, url_prefix="/rq")

    @app.before_request
    def dashboard_for_admins():
        if request.blueprint != "rq_dashboard":
            return None
        if not current_user.is_authenticated:
            return redirect(url_for("auth.login", next=request.path))
        if not can(current_user, "retrain"):
            abort(403)
        endpoint = (request.endpoint or "").removeprefix("rq_dashboard.")
        if endpoint not in RQ_DASHBOARD_READ_ONLY or request.method not in ("GET", "HEAD"):
            # 405, not 403: the role is right, the action is what this dashboard never does.
            abort(405, description="the queue dashboard is read-only; its actions are turned off")
        if not dashboard_args_fit(request.view_args or {}):
            abort(404)  # the dashboard itself divided by a per_page of 0, or sent Redis a page past its integers
        return None

    @app.errorhandler(NoSuchJobError)
    def no_such_job(_exc):
        return error_response("no such job", 404)


def dashboard_args_fit(args: dict) -> bool:
    """The dashboard's path values it does not check itself: its one Redis (instance 0), and pages and page sizes
    a person would ask for."""
    if args.get("instance_number", 0) != 0:
        return False
    for name, top in (("per_page", 1000), ("page", 10**6)):
        value = str(args.get(name, "1"))
        if not (value.isdecimal() and len(value) <= 7 and 0 <= int(value) <= top) or (name == "per_page" and
                                                                                        int(value) == 0):
            return False
    return True


def _migrations_dir() -> str:
    from app.platform.config import ROOT

    return str(ROOT / "migrations")

