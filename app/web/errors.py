"""Clear errors: JSON for the API, a page for the browser; never a stack trace."""

from __future__ import annotations

from flask import Flask, jsonify, make_response, render_template, request
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import OperationalError
from werkzeug.exceptions import HTTPException

from app.platform.exceptions import BadInput, Busy, NoModel, PoolEmpty, QueueUnavailable
from app.platform.extensions import db
from app.web.schemas import Error


def wants_json() -> bool:
    """API paths and fetch() calls get JSON errors."""
    return request.path.startswith("/api/") or request.accept_mimetypes.best == "application/json"


def error_response(message: str, status: int):
    """One error shape for every failure."""
    if wants_json():
        return jsonify(Error.respond(error=message, status=status)), status
    return render_template("error.html", message=message, status=status), status


def init_app(app: Flask) -> None:
    """Register the handlers."""

    @app.errorhandler(BadInput)
    def bad_input(exc: BadInput):
        db.session.rollback()
        response = make_response(error_response(str(exc), exc.status))
        if exc.retry_after:
            response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.errorhandler(Busy)
    def busy(exc: Busy):
        db.session.rollback()
        response = make_response(error_response(str(exc), 503))
        response.headers["Retry-After"] = str(exc.retry_after)
        return response

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError):
        return error_response(f"CSRF check failed: {exc.description}", 400)

    @app.errorhandler(QueueUnavailable)
    def queue_down(exc: QueueUnavailable):
        return error_response(f"Retrain is unavailable: {exc}. Annotation keeps working.", 503)

    @app.errorhandler(PoolEmpty)
    def pool_empty(exc: PoolEmpty):
        return error_response(str(exc), 404)

    @app.errorhandler(NoModel)
    def no_model(exc: NoModel):
        return error_response(f"no model is being served: {exc}", 503)

    @app.errorhandler(OperationalError)
    def db_down(exc: OperationalError):
        db.session.rollback()
        app.logger.error("database error: %s", exc)
        return error_response("the database is unavailable; try again shortly", 503)

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        messages = {
            401: "log in, or send a bearer token",
            403: "your role does not allow this",
            413: "the request body is too large",
        }
        return error_response(messages.get(exc.code, exc.description or exc.name), exc.code or 500)
