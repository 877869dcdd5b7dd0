"""The progress counters on the click path: what one call costs as the table grows, cached and counted each time.

    PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python bench/progress.py [--sizes 1000,10000,100000] [--calls 50]

Both click responses (the answer and the next comparison) carry app.annotation.answers.progress(). It counts the user's
own answers exactly and takes the shared totals (all answers, pool size, answered pool prompts) from a per-process
cache refreshed every PROGRESS_CACHE_SECONDS. For each backend and table size (the other annotators' clicks,
inserted in bulk by bench/export.py; the timed annotator has --mine of their own), this times the call with the
cache (the app's default) and with
PROGRESS_CACHE_SECONDS=0, which counts every table on every call as the app did before. Medians of --calls calls;
writes bench/out/progress.json.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import OUT, machine, markdown_table, scratch_database, write_json
from bench.export import insert_clicks, prepare

PG_SERVER = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def time_calls(app, *, user_id: int, calls: int) -> float:
    """Median ms of progress() for one user, each call in its own transaction as a request has."""
    from app.annotation.answers import progress
    from app.platform.extensions import db

    ms = []
    with app.app_context():
        for _ in range(calls):
            started = time.perf_counter()
            progress(user_id=user_id)
            db.session.rollback()
            ms.append((time.perf_counter() - started) * 1000)
        db.session.remove()
    return statistics.median(ms)


def vacuum_analyze(url: str) -> None:
    """VACUUM ANALYZE a Postgres database (outside a transaction, as VACUUM must run)."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text("VACUUM ANALYZE"))
    engine.dispose()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1000,10000,100000")
    p.add_argument("--calls", type=int, default=50)
    p.add_argument("--mine", type=int, default=1000, help="answers of the annotator whose progress is read")
    p.add_argument("--backends", default="sqlite,postgres")
    p.add_argument("--postgres-server", default=PG_SERVER)
    args = p.parse_args()
    from app import create_app

    rows, report = [], {"machine": machine(), "args": vars(args), "results": []}
    for backend in args.backends.split(","):
        tmp = Path(tempfile.mkdtemp(prefix="bench-progress-"))
        url = (scratch_database(args.postgres_server, "prefloop_bench_progress") if backend == "postgres"
               else f"sqlite:///{tmp / 'progress.db'}")
        prepare(url, 0, tmp)
        app = create_app({"SQLALCHEMY_DATABASE_URI": url, "MODEL_STORE": str(tmp / "models"), "REDIS_URL": None,
                          "SECRET_KEY": "bench", "RATELIMIT_STORAGE_URI": "memory://"})
        with app.app_context():
            from app.accounts.users import create_user
            from app.platform.extensions import db

            user_id = create_user(name="timed", role="annotator")[0].id
            db.session.remove()
        insert_clicks(url, args.mine, user_id=user_id)
        have = 0
        for size in [int(s) for s in args.sizes.split(",")]:
            insert_clicks(url, size - have, user_id=1)
            have = size
            if backend == "postgres":  # statistics as autovacuum would have them after a bulk insert
                vacuum_analyze(url)
            app.config["PROGRESS_CACHE_SECONDS"] = 0
            every = time_calls(app, user_id=user_id, calls=args.calls)
            app.config["PROGRESS_CACHE_SECONDS"] = 5.0
            cached = time_calls(app, user_id=user_id, calls=args.calls)
            report["results"].append({"backend": backend, "clicks": size, "counted_ms": round(every, 2),
                                      "cached_ms": round(cached, 2)})
            rows.append([backend, f"{size:,}", args.mine, f"{every:.2f}", f"{cached:.2f}", f"{every / cached:.1f}x"])
            print(rows[-1], flush=True)
    print(markdown_table(["backend", "clicks of others", "own clicks", "counted each call, ms",
                          "cached shared counts, ms", "ratio"], rows))
    write_json(OUT / "progress.json", report)
    print(f"wrote {OUT / 'progress.json'}")


if __name__ == "__main__":
    main()
