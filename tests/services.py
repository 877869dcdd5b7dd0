"""Where the test suite finds Postgres and Redis, and whether it must (CI) or may skip (a bare laptop)."""

from __future__ import annotations

import os

import pytest

PG_URL = os.environ.get("TEST_POSTGRES_URL", "")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "")
REQUIRED = os.environ.get("REQUIRE_SERVICES") == "1"

BOTH_BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def unavailable(what: str, why: str) -> None:
    """Fail in CI (the suite must really run there); skip with a reason elsewhere."""
    if REQUIRED:
        pytest.fail(f"{what} is required (REQUIRE_SERVICES=1) but unavailable: {why}")
    pytest.skip(f"{what} unavailable: {why}")


def postgres_url() -> str:
    """A reachable Postgres URL, or skip/fail."""
    if not PG_URL:
        unavailable("PostgreSQL", "TEST_POSTGRES_URL is not set")
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(PG_URL)
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("select 1"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001
        unavailable("PostgreSQL", str(exc))
    return PG_URL


def live_database(backend: str) -> dict:
    """The env_extra that points a live server at this backend: a freshly emptied Postgres, or nothing (the
    harness's own SQLite file)."""
    if backend != "postgres":
        return {}
    from harness.servers import reset_postgres

    url = postgres_url()
    reset_postgres(url)
    return {"DATABASE_URL": url}


def redis_url() -> str:
    """A reachable Redis URL (a db number of its own), or skip/fail."""
    if not REDIS_URL:
        unavailable("Redis", "TEST_REDIS_URL is not set")
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except Exception as exc:  # noqa: BLE001
        unavailable("Redis", str(exc))
    return REDIS_URL
