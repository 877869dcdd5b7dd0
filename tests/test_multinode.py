"""Several machines on one machine: two web nodes (separate gunicorns, ports and model caches) and two workers,
on one Postgres, one Redis and one S3-compatible bucket (moto's standalone server, harness/servers.S3Server)."""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from pathlib import Path

import pytest
import redis

from harness import servers
from harness.live import call, live_node, live_server, live_worker, wait_serving, worker_pids
from tests import services
from tests.test_dpo import TINY_SFT_WEIGHT
from tests.test_worker import finished, wait_run

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]
USERS = {"ann": "annotator", "bob": "annotator", "adm": "admin", "opr": "operator"}


def click_shortest(node, user: str, *, n: int) -> None:
    """n pool comparisons on a node, each answered with its shortest candidate."""
    for _ in range(n):
        status, comp = call(node, "POST", "/api/comparisons", user, {})
        assert status == 201, comp
        best = min(comp["candidates"], key=lambda c: (len(c["text"]), c["id"]))
        status, body = call(node, "POST", f"/api/comparisons/{comp['id']}/answer", user, {"candidate_id": best["id"]})
        assert status == 201, body


class Load:
    """Annotators clicking on every node in the background; any answer but 2xx is a failed request."""

    def __init__(self, nodes, users) -> None:
        self.nodes, self.users = nodes, users
        self.ok, self.failures, self._stop = 0, [], threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(n, u), daemon=True) for n, u in zip(nodes, users,
                                                                                                     strict=True)]

    def _run(self, node, user) -> None:
        while not self._stop.is_set():
            for method, path, body in (("POST", "/api/comparisons", {}), ("GET", "/api/progress", None)):
                try:
                    status, answer = call(node, method, path, user, body)
                except Exception as exc:  # noqa: BLE001 - a dropped connection is a failed request too
                    status, answer = 0, repr(exc)
                if 200 <= status < 300:
                    self.ok += 1
                    if path == "/api/comparisons":
                        call(node, "POST", f"/api/comparisons/{answer['id']}/answer", user, {"verdict": "skip"})
                else:
                    self.failures.append((node.base_url, path, status, answer))
            time.sleep(0.2)

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self.threads:
            t.join(timeout=60)


def browser_session_works_across_nodes(a, b) -> None:
    """Log in on node a; node b honours the session cookie and the CSRF token a's page carries (no sticky
    sessions), and failed logins count against one limit whichever node they hit."""
    import http.cookiejar
    import re
    import urllib.error
    import urllib.parse
    import urllib.request

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    page = opener.open(a.url("/auth/login")).read().decode()
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    form = urllib.parse.urlencode({"name": "ann", "password": a.users["ann"]["password"], "csrf_token": token})
    assert opener.open(a.url("/auth/login"), data=form.encode()).status == 200
    home = opener.open(b.url("/")).read().decode()  # node b: logged in by node a's cookie
    assert "Log out" in home
    csrf = re.search(r'<meta name="csrf-token" content="([^"]+)"', home).group(1)
    req = urllib.request.Request(a.url("/api/progress"))
    assert opener.open(req).status == 200
    # A write on node a with the CSRF token node b rendered.
    req = urllib.request.Request(a.url("/api/comparisons"), data=b"{}", method="POST",
                                 headers={"Content-Type": "application/json", "X-CSRFToken": csrf})
    assert opener.open(req).status == 201
    # LOGIN_LIMIT is 4 per minute per name in this deployment: two bad tries on each node, then a 429 on either.
    statuses = []
    for node in (a, b, a, b, a):
        fresh = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        token = re.search(r'name="csrf_token" value="([^"]+)"',
                          fresh.open(node.url("/auth/login")).read().decode()).group(1)
        data = urllib.parse.urlencode({"name": "bob", "password": "wrong", "csrf_token": token}).encode()
        try:
            statuses.append(fresh.open(node.url("/auth/login"), data=data).status)
        except urllib.error.HTTPError as exc:
            statuses.append(exc.code)
    assert statuses[-1] == 429 and 429 not in statuses[:4], statuses


def worker_of(run_id: str, url: str) -> int:
    """The pid of the worker process that took a run's job."""
    from rq import Worker
    from rq.job import Job

    from app.training.jobs import SERIALIZER

    conn = redis.Redis.from_url(url)
    name = Job.fetch(run_id, connection=conn, serializer=SERIALIZER).worker_name
    return Worker.find_by_key(Worker.redis_worker_namespace_prefix + name, connection=conn).pid


def corrupt_copy(node, s3, *, monkeypatch) -> int:
    """Publish the active version again into the bucket, flip bytes of its weights there (same size), register it."""
    from app import create_app
    from app.platform.extensions import db
    from app.versions.registry import register_version
    from app.versions.store import Bucket, local_copy
    from harness.starters import checkpoint_copier
    from worker.checkpoints import publish_checkpoint

    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    app = create_app({"SQLALCHEMY_DATABASE_URI": node.db_url, "MODEL_STORE": str(node.model_store),
                      "REDIS_URL": None, "SECRET_KEY": "x", "MODEL_CACHE": str(Path(node.log_path).parent / "tamper")})
    try:
        with app.app_context():
            number, location = publish_checkpoint(store=str(node.model_store),
                                                  save=checkpoint_copier(local_copy(f"{node.model_store}/1")),
                                                  manifest={"kind": "test", "parent_version": 1, "arch": "causal"})
            bucket = Bucket(str(node.model_store))
            manifest = bucket.manifest(number)
            key = f"{bucket.prefix}{manifest['files_prefix']}model.safetensors"
            data = s3.client().get_object(Bucket=bucket.bucket, Key=key)["Body"].read()
            s3.client().put_object(Bucket=bucket.bucket, Key=key, Body=data[:-16] + bytes(16))
            register_version(number=number, path=location, manifest=manifest)
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
    return number


def test_two_nodes_two_workers_one_database_one_redis_one_bucket(tmp_path, starter_dir, s3_server, monkeypatch):
    """A session and its CSRF token valid on either node, one login limit; clicks on both nodes; a Retrain on one
    worker, then both nodes serve it with no failed request; a rollback
    seen by both; a worker killed mid-run, then a Retrain on the other; a corrupt upload refused by every node."""
    pg = services.postgres_url()
    servers.reset_postgres(pg)
    redis_url = services.redis_url()
    redis.Redis.from_url(redis_url).flushdb()
    bucket = s3_server.bucket(f"multinode-{uuid.uuid4().hex[:10]}") + "/store"
    for key, value in s3_server.env.items():  # the starter is published from this process
        monkeypatch.setenv(key, value)
    env = {"DATABASE_URL": pg, "REDIS_URL": redis_url, "MODEL_STORE": bucket, "NODES": "2", **s3_server.env,
           "GEN_MAX_NEW_TOKENS": "24", "TRAIN_MIN_PAIRS": "4", "TRAIN_SFT_WEIGHT": str(TINY_SFT_WEIGHT),
           "PREFETCH_SIZE": "4", "GATE_EVAL_PROMPTS": "8", "LOGIN_LIMIT": "4 per minute",
           "GATE_MAX_DISTINCT_DROP_SE": "1000"}  # about nodes, not the gate: a tiny model's drop must not hold it
    with live_server(tmp_path=tmp_path / "node-a", starter_path=starter_dir["gpt2"], users=USERS, prompts=20,
                     env_extra=env) as a, live_node(a, tmp_path=tmp_path / "node-b") as b:
        nodes = (a, b)
        browser_session_works_across_nodes(a, b)
        click_shortest(a, "ann", n=20)
        click_shortest(b, "bob", n=20)
        for node in nodes:
            wait_serving(node, 1, pids=worker_pids(node))
        # Each node downloaded version 1 into its own cache; neither has a store folder of its own.
        assert (tmp_path / "node-a" / "model-cache" / "1" / "manifest.json").is_file()
        assert (tmp_path / "node-b" / "model-cache" / "1" / "manifest.json").is_file()

        with (live_worker(a, name="worker-1", env_extra={"MODEL_CACHE": str(tmp_path / "w1-cache")}) as w1,
              live_worker(a, name="worker-2", env_extra={"MODEL_CACHE": str(tmp_path / "w2-cache")}) as w2):
            with Load(nodes, ("ann", "bob")) as load:
                status, run = call(a, "POST", "/api/training-runs", "adm", {"epochs": 4})
                assert status == 202, run
                # Single flight across nodes: the other node answers with the same open run.
                status, same = call(b, "POST", "/api/training-runs", "adm", {})
                assert status == 200 and same["id"] == run["id"]
                run = wait_run(a, run["id"], until=finished)
                assert run["status"] == "succeeded", (run["status"], run["error"], run["metrics"].get("reasons"))
                version = run["version_id"]
                for node in nodes:
                    wait_serving(node, version, pids=worker_pids(node))
            assert load.failures == [] and load.ok > 0, load.failures[:5]

            # A rollback made on one node is seen by both.
            status, body = call(b, "POST", "/api/model-versions/1/activate", "opr", {"reason": "roll back"})
            assert status == 200, body
            for node in nodes:
                wait_serving(node, 1, pids=worker_pids(node))

            # A worker host dies mid-run: the run ends failed (its heartbeat expires), the other worker trains next.
            status, long_run = call(a, "POST", "/api/training-runs", "adm", {"epochs": 50})
            assert status == 202, long_run
            wait_run(a, long_run["id"], until=lambda r: r["status"] == "running" and (r["progress"] or {}).get("step"))
            dead = w1 if worker_of(long_run["id"], redis_url) == w1.pid else w2
            alive = w2 if dead is w1 else w1
            os.killpg(dead.pid, signal.SIGKILL)
            dead.wait(timeout=30)
            failed = wait_run(b, long_run["id"], until=finished, timeout=240)
            assert failed["status"] == "failed" and "abandoned" in failed["error"].lower(), failed["error"]
            status, again = call(b, "POST", "/api/training-runs", "adm", {"epochs": 2})
            assert status == 202, again
            again = wait_run(b, again["id"], until=finished)
            assert again["status"] in ("succeeded", "rejected"), again["error"]
            assert worker_of(again["id"], redis_url) == alive.pid

        # A corrupt upload: the activation's size check passes (same size), every node refuses to load it.
        serving = call(a, "GET", "/api/serving", "opr")[1]["serving"]
        bad = corrupt_copy(a, s3_server, monkeypatch=monkeypatch)
        status, body = call(a, "POST", f"/api/model-versions/{bad}/activate", "opr", {"reason": "tampered"})
        assert status == 200, body
        for node in nodes:
            wait_serving(node, serving, pids=worker_pids(node), error="does not match its sha256")
            assert not (Path(node.env["MODEL_CACHE"]) / str(bad)).exists()
