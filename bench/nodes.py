"""From promotion to every node serving: two web nodes on one bucket, cold cache against warm, and the download.

    PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python bench/nodes.py [--reps 3] [--arch gpt2] [--size default]

Starts moto's S3 server, creates its own scratch Postgres database (prefloop_bench_nodes, on the server
TEST_POSTGRES_URL names, default the local one) and uses Redis (TEST_REDIS_URL, default db 13), then two gunicorn
nodes (1 worker each, their own MODEL_CACHE) serving the starter from the bucket. Each repetition:
- cold: publishes a new copy of the starter to the bucket, activates it, and times until every worker process of
  both nodes answers /api/serving with it (Redis notifies them; each downloads, verifies and loads);
- warm: activates the previous version again (in both caches already) and times the same;
- download: one `local_copy` of a version into an empty cache in this process (download + sha256 check).
Writes bench/out/nodes.json; medians and ranges over the repetitions.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from bench.common import OUT, cached_starter, machine, scratch_database, stop_on_sigterm, write_json

PG_DEFAULT = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def publish_copy(app, starter: Path) -> int:
    """A new version in the bucket with the starter's files, registered (not activated)."""
    from app.lm.checkpoint import read_manifest
    from app.versions.registry import register_version
    from app.versions.store import local_copy
    from worker.checkpoints import publish_checkpoint

    def save(tmp: Path) -> dict:
        for f in starter.iterdir():
            if f.is_file() and f.name != "manifest.json":
                shutil.copy(f, tmp / f.name)
        return {"prompt_template": read_manifest(starter).get("prompt_template", "{input}")}

    with app.app_context():
        number, location = publish_checkpoint(store=app.config["MODEL_STORE"], save=save,
                                              manifest={"kind": "bench", "arch": "causal", "parent_version": 1})
        register_version(number=number, path=location, manifest=read_manifest(local_copy(location)))
    return number


def time_until_served(nodes, version: int, *, timeout: float = 300) -> float:
    """Activate `version` through the first node's API and time until every worker of every node serves it."""
    from harness.live import call, worker_pids

    pids = {node.base_url: worker_pids(node) for node in nodes}
    started = time.perf_counter()
    status, body = call(nodes[0], "POST", f"/api/model-versions/{version}/activate", "opr", {"reason": "bench"})
    assert status == 200, body
    seen: dict[tuple[str, int], int | None] = {}
    while time.perf_counter() - started < timeout:
        for node in nodes:
            _, answer = call(node, "GET", "/api/serving", "opr")
            seen[(node.base_url, answer["pid"])] = answer["serving"]
        if all(seen.get((node.base_url, p)) == version for node in nodes for p in pids[node.base_url]):
            return time.perf_counter() - started
        time.sleep(0.02)
    raise TimeoutError(f"version {version} not served everywhere within {timeout}s: {seen}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--arch", default="gpt2")
    p.add_argument("--size", default="default", choices=["default", "tiny"])
    args = p.parse_args()
    stop_on_sigterm()

    import redis

    from app import create_app
    from app.platform.extensions import db
    from app.versions.store import local_copy
    from harness.live import live_node, live_server
    from harness.servers import S3Server

    starter = cached_starter(args.arch, args.size)
    s3 = S3Server()
    os.environ.update(s3.env)  # this process publishes and downloads too
    tmp = Path(tempfile.mkdtemp(prefix="bench-nodes-"))
    try:
        bucket = s3.bucket(f"bench-{uuid.uuid4().hex[:8]}") + "/store"
        db_url = scratch_database(os.environ.get("TEST_POSTGRES_URL", PG_DEFAULT), "prefloop_bench_nodes")
        redis_url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
        redis.Redis.from_url(redis_url).flushdb()
        env = {"DATABASE_URL": db_url, "REDIS_URL": redis_url, "MODEL_STORE": bucket, "NODES": "2", **s3.env,
               "PREFETCH_SIZE": "0"}
        app = create_app({"SQLALCHEMY_DATABASE_URI": db_url, "MODEL_STORE": bucket, "REDIS_URL": None,
                          "SECRET_KEY": "bench", "MODEL_CACHE": str(tmp / "publisher-cache")})
        with live_server(tmp_path=tmp / "node-a", starter_path=starter, users={"opr": "operator"}, prompts=0,
                         env_extra=env) as a, live_node(a, tmp_path=tmp / "node-b") as b:
            nodes = (a, b)
            previous, cold, warm, download = 1, [], [], []
            time_until_served(nodes, 1)  # both nodes load version 1 once, outside the figures
            for rep in range(args.reps):
                version = publish_copy(app, starter)
                cold.append(time_until_served(nodes, version))
                warm.append(time_until_served(nodes, previous))
                previous = version
                with app.app_context():
                    app.config["MODEL_CACHE"] = str(tmp / f"empty-{rep}")
                    started = time.perf_counter()
                    local_copy(f"{bucket}/{version}")
                    download.append(time.perf_counter() - started)
                print(f"rep {rep}: cold {cold[-1]:.2f}s warm {warm[-1]:.2f}s download {download[-1]:.2f}s",
                      flush=True)
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
        size = sum(f.stat().st_size for f in starter.iterdir() if f.is_file())
        result = {
            "command": "PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python bench/nodes.py " + " ".join(
                f"--{k} {v}" for k, v in vars(args).items()),
            "machine": machine(), "checkpoint_bytes": size, "nodes": 2, "workers_per_node": 1,
            **{f"{name}_s": {"median": round(statistics.median(v), 3), "min": round(min(v), 3),
                             "max": round(max(v), 3), "all": [round(x, 3) for x in v]}
               for name, v in (("cold", cold), ("warm", warm), ("download", download))},
        }
        write_json(OUT / "nodes.json", result)
        print(result)
    finally:
        s3.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
