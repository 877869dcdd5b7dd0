"""`make run`'s launcher: web, worker and an embedded Redis come up together and go down together."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from harness.live import ROOT, LiveServer, _build_env, _create_user, _flask, _install_starter, _tail, free_port

pytestmark = pytest.mark.slow


def launcher_env(tmp_path, **extra) -> tuple[dict, str]:
    """A migrated database with the tiny starter active, and the launcher's environment for it."""
    db_url = f"sqlite:///{tmp_path / 'run.db'}"
    env = _build_env(db_url=db_url, model_store=tmp_path / "models", cache=tmp_path / "model-cache", env_extra={
        "PORT": str(free_port()), "REDIS_EMBEDDED_PATH": str(tmp_path / "redis.db"), "REDIS_URL": None,
        "XDG_RUNTIME_DIR": str(tmp_path / "xdg"), **extra})
    (tmp_path / "xdg").mkdir(exist_ok=True)
    return env, db_url


def start_launcher(env: dict, log: Path) -> subprocess.Popen:
    with log.open("a") as out:
        return subprocess.Popen([sys.executable, "-m", "app.platform.launcher"], cwd=ROOT, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def wait_ready(proc: subprocess.Popen, env: dict, log: Path, *, after: int = 0, timeout: float = 180) -> str:
    """Wait for the worker's ready line (past byte `after` of the log) and /healthz; return the embedded socket."""
    deadline = time.monotonic() + timeout
    while b"working queue 'training'" not in log.read_bytes()[after:]:
        assert proc.poll() is None and time.monotonic() < deadline, _tail(log, 60)
        time.sleep(0.5)
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{env['PORT']}/healthz", timeout=5) as res:
                assert json.loads(res.read()) == {"status": "ok"}
                break
        except OSError:
            assert time.monotonic() < deadline, _tail(log, 60)
            time.sleep(0.5)
    return log.read_bytes()[after:].decode().split("embedded Redis at unix://")[1].split()[0]


def descendants(pid: int) -> dict[int, str]:
    """Every process below `pid` (children, grandchildren...), with its command line."""
    parents, cmdlines = {}, {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                cmdlines[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = {}, [pid]
    while frontier:
        parent = frontier.pop()
        for child, ppid in parents.items():
            if ppid == parent and child not in found:
                found[child] = cmdlines.get(child, "")
                frontier.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def redis_down(socket_file: str) -> bool:
    import redis

    try:
        redis.Redis(unix_socket_path=socket_file, socket_connect_timeout=1).ping()
    except (redis.ConnectionError, FileNotFoundError):
        return True
    return False


def wait_gone(pids, timeout: float) -> list[int]:
    """Wait until none of `pids` lives; return those still alive at the deadline."""
    deadline = time.monotonic() + timeout
    while (left := [p for p in pids if alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def kill_all(proc: subprocess.Popen, pids) -> None:
    for pid in [proc.pid, *pids]:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    proc.wait(timeout=30)


def test_launcher_starts_web_worker_and_embedded_redis_then_stops_them(tmp_path, starter_dir):
    env, db_url = launcher_env(tmp_path)
    _flask(["db", "upgrade"], env=env, timeout=120)
    _install_starter(db_url=db_url, model_store=tmp_path / "models", cache=tmp_path / "model-cache",
                     starter_path=starter_dir["gpt2"])
    log = tmp_path / "run.log"
    proc = start_launcher(env, log)
    pids: dict = {}
    try:
        socket_file = wait_ready(proc, env, log)
        assert os.path.exists(socket_file)
        pids = descendants(proc.pid)
        assert any("gunicorn" in c for c in pids.values()) and any("-m worker" in c for c in pids.values()), pids
        # gunicorn's control socket would be $XDG_RUNTIME_DIR/gunicorn.ctl, one path for every instance of the user.
        assert list((tmp_path / "xdg").iterdir()) == []

        proc.send_signal(signal.SIGTERM)  # what Ctrl-C on `make run` amounts to
        assert proc.wait(timeout=90) is not None
        # Every child is gone, whatever group or session it runs in, and the embedded Redis shut down with them.
        assert wait_gone(pids, 10) == []
        with pytest.raises(ProcessLookupError):
            os.killpg(proc.pid, 0)
        assert not os.path.exists(socket_file) or redis_down(socket_file)
        # Nor is its temporary folder (socket and config) left behind in /tmp.
        assert not os.path.exists(os.path.dirname(socket_file))
        # What it and the processes it started wrote is private: the Redis data and the SQLite files.
        written = [p for p in tmp_path.iterdir() if p.name.startswith(("redis.db", "run.db"))]
        assert any(p.name == "redis.db" for p in written), written
        assert {p.name: oct(p.stat().st_mode & 0o777) for p in written if p.stat().st_mode & 0o077} == {}
    finally:
        if proc.poll() is None:
            kill_all(proc, pids)


@pytest.mark.parametrize("processes", [1, 2])
def test_ctrl_c_mid_training_stops_everything_and_fails_the_run(tmp_path, starter_dir, processes):
    """The bad timing, forced: a long training run, then SIGINT to the group and SIGTERM to the launcher 0.1 s
    apart (Ctrl-C, then make's SIGTERM). Within 30 s every process is gone (gunicorn, its workers, the prefetcher,
    the worker and its work-horse, and with TRAIN_PROCESSES=2 torchrun and its two training processes) and the
    embedded Redis is down; the run is already marked failed by its own job, nothing new appears in the store, and
    the next start sweeps a leftover temp checkpoint folder."""
    from tests.test_dpo import TINY_SFT_WEIGHT
    from tests.test_worker import click_shortest, wait_run

    env, db_url = launcher_env(tmp_path, PREFETCH_SIZE="8", GEN_MAX_NEW_TOKENS="40", TRAIN_MIN_PAIRS="4",
                               TRAIN_SFT_WEIGHT=str(TINY_SFT_WEIGHT), TRAIN_PROCESSES=str(processes))
    _flask(["db", "upgrade"], env=env, timeout=120)
    store = tmp_path / "models"
    _install_starter(db_url=db_url, model_store=store, cache=tmp_path / "model-cache", starter_path=starter_dir["gpt2"])
    srv = LiveServer(base_url=f"http://127.0.0.1:{env['PORT']}", db_url=db_url, model_store=store,
                     log_path=tmp_path / "run.log", env=env)
    for name, role in (("ann", "annotator"), ("adm", "admin")):
        srv.users[name] = _create_user(name, role, env=env)
    _flask(["prompts", "sample", "--n", "20"], env=env, timeout=120)
    log = srv.log_path
    proc = start_launcher(env, log)
    pids: dict = {}
    try:
        socket_file = wait_ready(proc, env, log)
        click_shortest(srv, n=24)
        status, run = call_api(srv, "POST", "/api/training-runs", {"epochs": 50})
        assert status == 202, run
        wait_run(srv, run["id"], until=lambda r: r["status"] == "running" and (r["progress"] or {}).get("step"))
        pids = descendants(proc.pid)
        commands = list(pids.values())
        assert sum("-m worker" in c for c in commands) >= 2, commands  # the worker and its work-horse
        assert any("app.versions.prefetch" in c for c in commands) and any("gunicorn" in c for c in commands), commands
        assert sum("worker.distributed" in c for c in commands) == (0 if processes == 1 else 3), commands  # + torchrun

        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole foreground group
        time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)  # make passes a SIGTERM on to the launcher a moment later
        stopped_at = time.monotonic()
        assert wait_gone([proc.pid, *pids], 30) == [], {p: pids.get(p) for p in pids if alive(p)}
        assert time.monotonic() - stopped_at < 30 and redis_down(socket_file)
        proc.wait(timeout=10)

        listing = sorted(p.name for p in store.iterdir())
        time.sleep(5)
        assert sorted(p.name for p in store.iterdir()) == listing and "2" not in listing, listing
        status, error = run_row(tmp_path, run["id"])
        assert status == "failed" and "the worker was stopped" in error, (status, error)
        (store / ".tmp-leftover").mkdir()  # what a kill in the middle of a save leaves

        offset = log.stat().st_size
        proc = start_launcher(env, log)
        wait_ready(proc, env, log, after=offset)
        pids = descendants(proc.pid)
        assert run_row(tmp_path, run["id"]) == (status, error)  # final: the sweep and the queue left it alone
        assert not (store / ".tmp-leftover").exists() and sorted(p.name for p in store.iterdir()) == ["1"]
        versions = sqlite3.connect(tmp_path / "run.db").execute("select id from model_versions").fetchall()
        assert versions == [(1,)]
        proc.send_signal(signal.SIGTERM)
        assert wait_gone([proc.pid, *pids], 30) == []
    finally:
        if proc.poll() is None:
            kill_all(proc, pids)


def call_api(srv, method: str, path: str, body: dict | None = None):
    from harness.live import call

    return call(srv, method, path, "adm", body)


def run_row(tmp_path, run_id: str) -> tuple[str, str]:
    conn = sqlite3.connect(tmp_path / "run.db")
    try:
        return conn.execute("select status, error from training_runs where id = ?", (run_id,)).fetchone()
    finally:
        conn.close()
