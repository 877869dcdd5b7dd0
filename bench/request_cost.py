"""What the web does per JSON request, without the network or a second process: Flask's test client against one
app on a fresh SQLite file, median microseconds per request (the server side of a click's reads).

    PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python bench/request_cost.py [--calls 400] [--out FILE]

Used to check a change to the request path (for example, building every body through its pydantic model) against
the tree before it: run it from the root of each tree, alternating, several times. Shared progress counts are
counted on every call (PROGRESS_CACHE_SECONDS=0), so the progress figure includes its three counts.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import OUT, ROOT, machine, markdown_table, write_json


def make_app(folder: Path):
    """An app on a fresh migrated SQLite file, an admin's token, and 50 pool prompts."""
    from flask_migrate import upgrade

    from app import create_app
    from app.accounts.users import create_user
    from app.annotation.prompts import import_prompts

    app = create_app({"TESTING": True, "SECRET_KEY": "bench", "SQLALCHEMY_DATABASE_URI": f"sqlite:///{folder}/db",
                      "WTF_CSRF_ENABLED": False, "RATELIMIT_ENABLED": False, "REDIS_URL": None,
                      "MODEL_STORE": str(folder / "models"), "PROGRESS_CACHE_SECONDS": 0})
    with app.app_context():
        upgrade(directory=str(ROOT / "migrations"))
        _, _, token = create_user(name="bench", role="admin", password="bench-password-1")
        import_prompts(texts=[f"Prompt {i}." for i in range(50)], source="bench", max_chars=200)
    return app, {"Authorization": f"Bearer {token}"}


def median_us(call, calls: int) -> float:
    """Median microseconds of `calls` calls; every answer must be a 2xx."""
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        response = call()
        times.append((time.perf_counter() - started) * 1e6)
        assert response.status_code < 300, response.get_data(as_text=True)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--out", type=Path, default=OUT / "request_cost.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        app, headers = make_app(Path(tmp))
        client = app.test_client()
        result = {
            "GET /api/progress": median_us(lambda: client.get("/api/progress", headers=headers), args.calls),
            "GET /healthz": median_us(lambda: client.get("/healthz"), args.calls),
            "GET /api/model-versions": median_us(lambda: client.get("/api/model-versions", headers=headers),
                                                 args.calls // 2),
        }
    print(markdown_table(["request", "median us"], [[k, round(v, 1)] for k, v in result.items()]))
    write_json(args.out, {"calls": args.calls, "median_us": result, "machine": machine()})


if __name__ == "__main__":
    main()
