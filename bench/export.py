"""Export benchmark: time and peak memory of exporting N generated clicks, on SQLite and on PostgreSQL.

    python bench/export.py [--clicks 100000] [--formats trl,trl-chat,kto,parquet]
        [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres]

The clicks go in with bulk SQL (not the API): a comparison with three candidates and an answer choosing the first,
so each click exports two pairs (three kto rows); every format is exported from the same database. Postgres gets a
scratch database of its own (CREATE DATABASE through the server's `postgres` database, dropped at the end). Each
export runs in a fresh process, which reports its wall time, its peak RSS above what it held before the export started,
and the peak of Python's own allocations (tracemalloc).
Results go to bench/out/export.json; docs/BENCHMARKS.md has the figures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import OUT, ROOT  # noqa: E402


def insert_clicks(db_url: str, n: int, *, user_id: int, version_id: int = 1, batch: int = 5000) -> None:
    """Insert n answered comparisons (three candidates, the first chosen) with bulk SQL, after any that exist."""
    import sqlalchemy as sa

    from app.tables import Candidate, Comparison, Preference, utcnow

    engine = sa.create_engine(db_url)
    tables = [Comparison.__table__, Candidate.__table__, Preference.__table__]
    now = utcnow()
    with engine.begin() as conn:
        base = [conn.scalar(sa.select(sa.func.coalesce(sa.func.max(t.c.id), 0))) for t in tables]
        for lo in range(0, n, batch):
            rows: list[list[dict]] = [[], [], []]
            for i in range(lo, min(n, lo + batch)):
                cid, first = base[0] + i + 1, base[1] + 3 * i + 1
                text = f"Send me the report {i} now, it is late."
                rows[0].append({"id": cid, "input_text": text, "model_prompt": f"Rewrite politely: {text}\nPolite:",
                                "model_version_id": version_id, "settings": {"n": 3}, "seed": i, "state": "assigned",
                                "user_id": user_id, "created_at": now, "assigned_at": now})
                rows[1] += [{"id": first + k, "comparison_id": cid, "position": k, "sample_index": k,
                             "text": f"Could you please send me report {i} when you can? (variant {k})"}
                            for k in range(3)]
                rows[2].append({"id": base[2] + i + 1, "comparison_id": cid, "user_id": user_id, "verdict": "choice",
                                "chosen_candidate_id": first, "latency_ms": 900, "created_at": now})
            for table, chunk in zip(tables, rows, strict=True):
                conn.execute(table.insert(), chunk)
        if engine.dialect.name == "postgresql":  # explicit ids: move the sequences past them
            for table in tables:
                conn.execute(sa.text(f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
                                     f"(SELECT max(id) FROM {table.name}))"))
    engine.dispose()


def prepare(db_url: str, clicks: int, tmp: Path) -> None:
    """Migrate a fresh database, add one user and a version row, then the clicks."""
    from flask_migrate import upgrade

    from app import create_app
    from app.accounts.users import create_user
    from app.platform.extensions import db
    from app.versions.registry import register_version

    app = create_app({"SQLALCHEMY_DATABASE_URI": db_url, "MODEL_STORE": str(tmp / "models"), "REDIS_URL": None,
                      "SECRET_KEY": "bench", "RATELIMIT_STORAGE_URI": "memory://"})
    with app.app_context():
        upgrade()
        user, _, _ = create_user(name="bench", role="admin", password="bench-password")
        register_version(number=1, path=tmp / "models" / "1", manifest={"arch": "causal", "base_model": "bench"})
        user_id = user.id
        db.session.remove()
        db.engine.dispose()
    insert_clicks(db_url, clicks, user_id=user_id)


EXPORT = """
import json, resource, sys, time, tracemalloc
from app import create_app
from app.dataset.export import export_lines, write_parquet
url, mode, fmt = sys.argv[1], sys.argv[2], sys.argv[3]
app = create_app({"SQLALCHEMY_DATABASE_URI": url, "REDIS_URL": None, "SECRET_KEY": "bench",
                  "RATELIMIT_STORAGE_URI": "memory://"})


def before():
    # The export as it was (commit fcc77eb): every answer loaded first, then its comparison and its candidates
    # lazily, two more queries per click.
    from sqlalchemy import select
    from app.platform.extensions import db
    from app.tables import Preference
    prefs = list(db.session.scalars(select(Preference).where(Preference.verdict == "choice").order_by(Preference.id)))
    for pref in prefs:
        comparison = pref.comparison
        chosen = next(c for c in comparison.candidates if c.id == pref.chosen_candidate_id)
        for other in comparison.candidates:
            if other.id != chosen.id and other.text != chosen.text:
                yield json.dumps({"prompt": comparison.model_prompt, "chosen": " " + chosen.text,
                                  "rejected": " " + other.text, "comparison_id": comparison.id,
                                  "preference_id": pref.id, "input": comparison.input_text,
                                  "model_version_id": comparison.model_version_id}, ensure_ascii=False) + "\\n"


with app.app_context(), open("/dev/null", "w") as out:
    from app.platform.extensions import db
    db.session.execute(db.text("select 1"))  # connect first: the pool is not the export's memory
    json.dumps({"warm": "up"})
    rss_before = int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize()
    if mode == "python":
        tracemalloc.start()
    started, lines, size = time.perf_counter(), 0, 0
    if fmt == "parquet":
        import os, tempfile
        with tempfile.TemporaryDirectory() as tmp:
            lines = write_parquet(os.path.join(tmp, "x.parquet"))
            size = os.path.getsize(os.path.join(tmp, "x.parquet"))
    for line in (before() if mode == "before" else [] if fmt == "parquet" else export_lines(fmt=fmt)):
        out.write(line)
        lines, size = lines + 1, size + len(line)
    seconds = time.perf_counter() - started
    peak_python = tracemalloc.get_traced_memory()[1] if mode == "python" else None
peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"seconds": round(seconds, 2), "lines": lines, "mb_out": round(size / 2**20, 1),
                  "peak_rss_above_start_mb": round(max(0, peak_rss - rss_before) / 2**20, 1),
                  "peak_python_alloc_mb": peak_python and round(peak_python / 2**20, 2)}))
"""


def measure(db_url: str, mode: str = "time", fmt: str = "trl") -> dict:
    """Export in a fresh process ("time": plain; "python": under tracemalloc; "before": the old export)."""
    done = subprocess.run([sys.executable, "-c", EXPORT, db_url, mode, fmt], cwd=ROOT, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def scratch_postgres(admin_url: str, name: str, *, drop: bool = False) -> str:
    """Create (or drop) database `name` through the server's `postgres` database; return its URL."""
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    engine = sa.create_engine(make_url(admin_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        if not drop:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def fresh_database(backend: str, name: str, tmp: Path, admin_url: str) -> str:
    """An empty database named `name` on the backend."""
    if backend == "sqlite":
        return f"sqlite:///{tmp / (name + '.db')}"
    return scratch_postgres(admin_url, name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clicks", type=int, default=100_000)
    parser.add_argument("--before", type=int, default=0,
                        help="also time the old export (one query per click, all rows loaded) on this many clicks")
    parser.add_argument("--formats", default="trl", help="comma-separated export formats (app/dataset/export.py)")
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
                        help="a server URL; '' skips Postgres")
    args = parser.parse_args()
    runs = [("now", args.clicks, "time")] + ([("before", args.before, "before")] if args.before else [])
    results, scratch = {}, []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            for backend in ["sqlite"] + (["postgres"] if args.postgres else []):
                for label, clicks, mode in runs:
                    name = f"prefloop_bench_export_{label}"
                    url = fresh_database(backend, name, Path(tmp), args.postgres)
                    scratch += [name] if backend == "postgres" else []
                    started = time.perf_counter()
                    prepare(url, clicks, Path(tmp) / f"{backend}-{label}")
                    print(f"{backend} {label}: {clicks} clicks inserted in {time.perf_counter() - started:.1f} s")
                    for fmt in args.formats.split(",") if mode == "time" else ["trl"]:
                        out = {"clicks": clicks, "format": fmt, **measure(url, mode, fmt)}
                        if mode == "time":
                            out["peak_python_alloc_mb"] = measure(url, "python", fmt)["peak_python_alloc_mb"]
                        key = f"{backend} {label}" + ("" if fmt == "trl" else f" {fmt}")
                        results[key] = out
                        print(key, out, flush=True)
        finally:
            for name in scratch:
                scratch_postgres(args.postgres, name, drop=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "export.json").write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
