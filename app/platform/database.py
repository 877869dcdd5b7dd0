"""The database: engine settings that differ by backend, and storing an import all or nothing."""

from __future__ import annotations

from flask import Flask
from sqlalchemy import event, make_url
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from app.platform.exceptions import BadInput
from app.platform.extensions import db


def init_app(app: Flask) -> None:
    """Make the SQLite file's folder; WAL and the busy timeout are set on every connection by _sqlite_pragmas.

    The file holds password hashes and every annotation: it is made (or kept) private to this user, 0600, in a
    folder made 0700. SQLite gives its -wal and -shm files the database file's mode."""
    url = make_url(app.config["SQLALCHEMY_DATABASE_URI"])
    if url.get_backend_name() == "sqlite":
        import os
        from pathlib import Path

        # SQLAlchemy's own parsing: "sqlite://" (in memory) has no file, and a query string is no part of the path.
        path = url.database
        if path and path != ":memory:" and not path.startswith("file:"):
            Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
            os.chmod(path, 0o600)


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, _record) -> None:
    import sqlite3

    if isinstance(dbapi_connection, sqlite3.Connection):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA busy_timeout=5000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()


def add_all_new(rows: list, *, what: str) -> None:
    """Store an import's new rows in one transaction. Rows another request stored meanwhile (a unique key taken
    after this import checked for duplicates) make it a 409 that keeps none of them."""
    db.session.add_all(rows)
    try:
        db.session.commit()
    except IntegrityError as exc:
        db.session.rollback()
        raise BadInput(f"some of these {what} were imported by another request at the same time; nothing was "
                       "imported: import them again", 409) from exc
