"""`make run`'s launcher: web, worker and an embedded Redis come up together and go down together."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.live import ROOT, _build_env, _flask, _install_starter, _tail, free_port

pytestmark = pytest.mark.slow


def test_launcher_starts_web_worker_and_embedded_redis_then_stops_them(tmp_path, starter_dir):
    db_url = f"sqlite:///{tmp_path / 'run.db'}"
    port = free_port()
    env = _build_env(db_url=db_url, model_store=tmp_path / "models", env_extra={
        "PORT": str(port), "REDIS_EMBEDDED_PATH": str(tmp_path / "redis.db"), "REDIS_URL": None})
    _flask(["db", "upgrade"], env=env, timeout=120)
    _install_starter(db_url=db_url, model_store=tmp_path / "models", starter_path=starter_dir["gpt2"])
    log = tmp_path / "run.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "app.launcher"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        health = None
        while time.monotonic() < deadline and "working queue 'training'" not in _tail(log, 400):
            assert proc.poll() is None, _tail(log, 60)
            time.sleep(0.5)
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as res:
                    health = json.loads(res.read())
                    break
            except OSError:
                time.sleep(0.5)
        assert health == {"status": "ok"}, _tail(log, 60)
        text = _tail(log, 400)
        assert "embedded Redis at unix://" in text and "working queue 'training'" in text
        socket_file = text.split("embedded Redis at unix://")[1].split()[0]
        assert os.path.exists(socket_file)

        proc.send_signal(signal.SIGTERM)  # what Ctrl-C on `make run` amounts to
        assert proc.wait(timeout=90) is not None
        # Every child is gone (the group is empty) and the embedded Redis shut down with them.
        with pytest.raises(ProcessLookupError):
            os.killpg(proc.pid, 0)
        assert not os.path.exists(socket_file) or _redis_down(socket_file)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _redis_down(socket_file: str) -> bool:
    import redis

    try:
        redis.Redis(unix_socket_path=socket_file, socket_connect_timeout=1).ping()
    except redis.ConnectionError:
        return True
    return False
