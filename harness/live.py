"""Run the real thing for a test: a fresh database, the starter model, users, prompts, and gunicorn serving it.

    with live_server(tmp_path=tmp_path, starter_path=starter_dir["gpt2"]) as srv:
        requests.get(srv.url("/healthz"))
        srv.users["ann"]["password"], srv.users["ann"]["token"]

Everything the server needs goes through the same doors an operator uses (`flask db upgrade`,
`flask users create`, `flask prompts sample`, `python -m gunicorn ... 'app:create_app()'`); only the starter is
registered in-process, since no CLI command registers an existing folder. Gunicorn runs in its own process group,
so whatever happens (a failed start, a failed test, Ctrl-C) the group is terminated and then killed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Environment a caller's shell might set that would point the server somewhere else than the test's own setup.
_SCRUBBED = ("DATABASE_URL", "REDIS_URL", "MODEL_STORE", "BASE_MODEL", "PORT", "WEB_CONCURRENCY", "FLASK_APP",
             "GUNICORN_CMD_ARGS", "REDIS_EMBEDDED_PATH")

DEFAULT_USERS = {"ann": "annotator"}


class LiveServerError(RuntimeError):
    """The live server could not be prepared or started; the message carries the log tail."""


@dataclass
class LiveServer:
    """A running gunicorn: where it listens, its database, the users made for it, and its log."""

    base_url: str
    db_url: str
    model_store: Path
    log_path: Path
    env: dict
    users: dict = field(default_factory=dict)  # name -> {"role", "password", "token"}
    proc: subprocess.Popen | None = None

    def url(self, path: str = "/") -> str:
        """An absolute URL on this server."""
        return self.base_url + path

    def log_tail(self, lines: int = 60) -> str:
        """The last lines of the gunicorn log (stdout and stderr together)."""
        return _tail(self.log_path, lines)

    def flask(self, *args: str, timeout: float = 120) -> str:
        """Run a `flask` CLI command against this server's database and store; return its stdout."""
        return _flask(list(args), env=self.env, timeout=timeout)

    def alive(self) -> bool:
        """Whether the gunicorn master is still running."""
        return self.proc is not None and self.proc.poll() is None


def free_port() -> int:
    """A TCP port nobody listens on right now (a small race remains; start() retries on 'in use')."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _flask(args: list[str], *, env: dict, timeout: float) -> str:
    """Run `python -m flask ARGS` in the repo root; raise with its output on failure or timeout."""
    cmd = [sys.executable, "-m", "flask", *args]
    try:
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise LiveServerError(f"`flask {' '.join(args)}` did not finish in {timeout:.0f}s\n{exc.stderr or ''}") from exc
    if done.returncode != 0:
        raise LiveServerError(
            f"`flask {' '.join(args)}` exited {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        )
    return done.stdout


def _build_env(*, db_url: str, model_store: Path | str, cache: Path, env_extra: dict | None) -> dict:
    """The server's and the CLI's environment: inherited, scrubbed, then ours, then the caller's (None unsets)."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    env.update({
        "FLASK_APP": "app:create_app",
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": db_url,
        "MODEL_STORE": str(model_store),
        "MODEL_CACHE": str(cache),
        "SECRET_KEY": "live-test-secret",
        "TORCH_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONUNBUFFERED": "1",
        "GEN_MAX_NEW_TOKENS": "16",  # as in conftest.make_config; override through env_extra
        # Tests and benchmarks click faster than a person may; the tests of the limit set their own.
        "GENERATION_LIMIT": "100000 per minute",
    })
    for key, value in (env_extra or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = str(value)
    return env


def _install_starter(*, db_url: str, model_store: Path | str, cache: Path, starter_path: Path) -> None:
    """Copy the starter into the store as version 1, register and activate it (in-process, then let go); into a
    bucket (s3://), it is published there like any version (AWS_* from this process's environment)."""
    from app import create_app
    from app.platform.extensions import db
    from harness.starters import install_starter, publish_starter

    app = create_app({"SQLALCHEMY_DATABASE_URI": db_url, "MODEL_STORE": str(model_store), "REDIS_URL": None,
                      "PREFETCH_SIZE": 0, "SECRET_KEY": "live-test-secret", "MODEL_CACHE": str(cache)})
    try:
        if str(model_store).startswith("s3://"):
            publish_starter(app, Path(starter_path))
        else:
            install_starter(app, Path(starter_path))
    finally:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


def _create_user(name: str, role: str, *, env: dict) -> dict:
    out = _flask(["users", "create", name, "--role", role], env=env, timeout=120)
    password = re.search(r"^password: (\S+)$", out, re.M)
    token = re.search(r"^token: (\S+)$", out, re.M)
    if not (password and token):
        raise LiveServerError(f"could not read the password/token from `flask users create`:\n{out}")
    return {"role": role, "password": password.group(1), "token": token.group(1)}


def _stop(proc: subprocess.Popen, *, grace: float = 40.0) -> None:
    """SIGTERM the gunicorn group (graceful), then SIGKILL whatever is left; always reap the master.

    The group id is the master's pid (start_new_session), and it stays valid while any member lives, so this
    also reaches workers orphaned by a master that died first.
    """
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def _wait_healthy(srv: LiveServer, *, timeout: float) -> None:
    """Poll /healthz until it answers 200, the master dies, or the deadline passes."""
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    while time.monotonic() < deadline:
        if not srv.alive():
            raise LiveServerError(f"gunicorn exited with {srv.proc.returncode} before answering /healthz\n"
                                  f"--- log tail ---\n{srv.log_tail()}")
        try:
            with urllib.request.urlopen(srv.url("/healthz"), timeout=10) as res:
                if res.status == 200:
                    return
                last = f"HTTP {res.status}"
        except (urllib.error.URLError, OSError) as exc:
            last = repr(exc)
        time.sleep(0.25)
    raise LiveServerError(f"gunicorn did not answer /healthz within {timeout:.0f}s (last: {last})\n"
                          f"--- log tail ---\n{srv.log_tail()}")


def _wait_workers(srv: LiveServer, *, workers: int, timeout: float) -> None:
    """With several workers, also wait until the log shows each one booted (a best effort: see gunicorn_conf)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = srv.log_path.read_text(encoding="utf-8", errors="replace")
        if len(set(re.findall(r"Booting worker with pid: (\d+)", text))) >= workers:
            return
        if not srv.alive():
            break
        time.sleep(0.25)
    raise LiveServerError(f"{workers} gunicorn workers did not boot within {timeout:.0f}s\n"
                          f"--- log tail ---\n{srv.log_tail()}")


@contextlib.contextmanager
def live_server(
    *,
    tmp_path: Path,
    starter_path: Path | str,
    env_extra: dict | None = None,
    workers: int = 1,
    users: dict[str, str] | None = None,
    prompts: int = 30,
    start_timeout: float = 120.0,
    gunicorn_args: tuple[str, ...] = (),
) -> Iterator[LiveServer]:
    """Prepare a fresh database in tmp_path and serve it with gunicorn until the block exits.

    env_extra: extra environment for the CLI and the server; a value of None unsets the variable. Set
    DATABASE_URL here to use another database (e.g. PostgreSQL; it must be empty, the migrations run on it),
    REDIS_URL to enable Redis (unset by default: no pub/sub, the periodic database check notices swaps).
    users: name -> role, created with `flask users create` (default: one annotator "ann").
    prompts: how many starter-task prompts `flask prompts sample` puts in the pool (0: none).
    """
    tmp_path = Path(tmp_path)
    model_store = (env_extra or {}).get("MODEL_STORE") or tmp_path / "models"
    db_url = (env_extra or {}).get("DATABASE_URL") or f"sqlite:///{tmp_path / 'live.db'}"
    env = _build_env(db_url=db_url, model_store=model_store, cache=tmp_path / "model-cache", env_extra=env_extra)
    srv = LiveServer(base_url="", db_url=db_url, model_store=model_store, log_path=tmp_path / "gunicorn.log", env=env)

    _flask(["db", "upgrade"], env=env, timeout=120)
    _install_starter(db_url=db_url, model_store=model_store, cache=tmp_path / "model-cache",
                     starter_path=Path(starter_path))
    for name, role in (DEFAULT_USERS if users is None else users).items():
        srv.users[name] = _create_user(name, role, env=env)
    if prompts:
        _flask(["prompts", "sample", "--n", str(prompts)], env=env, timeout=120)

    try:
        _start_gunicorn(srv, workers=workers, gunicorn_args=gunicorn_args, start_timeout=start_timeout)
        yield srv
    finally:
        if srv.proc is not None:
            _stop(srv.proc)


def _start_gunicorn(srv: LiveServer, *, workers: int, gunicorn_args: tuple[str, ...], start_timeout: float) -> None:
    """Start gunicorn for srv on a free port (retried when the port was taken meanwhile) and wait until healthy."""
    for attempt in range(3):
        port = free_port()
        srv.base_url = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
               "--config", "app/gunicorn_conf.py", "--access-logfile", "-", *gunicorn_args, "app:create_app()"]
        with srv.log_path.open("a", encoding="utf-8") as log:
            log.write(f"=== attempt {attempt + 1}: {' '.join(cmd)}\n")
            log.flush()
            srv.proc = subprocess.Popen(cmd, cwd=ROOT, env=srv.env, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            _wait_healthy(srv, timeout=start_timeout)
            break
        except LiveServerError:
            in_use = "Address already in use" in srv.log_tail(200)
            _stop(srv.proc)
            if not in_use or attempt == 2:
                raise
    if workers > 1:
        _wait_workers(srv, workers=workers, timeout=start_timeout)


@contextlib.contextmanager
def live_node(srv: LiveServer, *, tmp_path: Path, workers: int = 1, start_timeout: float = 120.0) -> Iterator[
        LiveServer]:
    """Another web node of srv's deployment: its own gunicorn, port, log and MODEL_CACHE; the same database,
    Redis, store, secret and users."""
    tmp_path = Path(tmp_path)
    tmp_path.mkdir(parents=True, exist_ok=True)
    node = LiveServer(base_url="", db_url=srv.db_url, model_store=srv.model_store, log_path=tmp_path / "gunicorn.log",
                      env={**srv.env, "MODEL_CACHE": str(tmp_path / "model-cache")}, users=srv.users)
    try:
        _start_gunicorn(node, workers=workers, gunicorn_args=(), start_timeout=start_timeout)
        yield node
    finally:
        if node.proc is not None:
            _stop(node.proc)


@contextlib.contextmanager
def live_worker(srv: LiveServer, *, env_extra: dict | None = None, ready_timeout: float = 120.0,
                name: str = "worker") -> Iterator[subprocess.Popen]:
    """Run `python -m worker` against a live server's database, store and Redis until the block exits (its log:
    `<name>.log` beside the server's)."""
    env = {**srv.env, **(env_extra or {})}
    if not env.get("REDIS_URL"):
        raise LiveServerError("the worker needs REDIS_URL in the live server's env_extra")
    log_path = srv.log_path.with_name(f"{name}.log")
    offset = log_path.stat().st_size if log_path.exists() else 0  # an earlier worker's lines do not count
    with log_path.open("a", encoding="utf-8") as log:
        proc = subprocess.Popen([sys.executable, "-m", "worker"], cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + ready_timeout
        while b"working queue 'training'" not in log_path.read_bytes()[offset:]:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise LiveServerError(f"the worker did not start (exit {proc.poll()})\n{_tail(log_path, 60)}")
            time.sleep(0.25)
        yield proc
    finally:
        _stop(proc)


def wait_for_buffer(db_url: str, want: int, timeout: float = 120.0) -> int:
    """Wait until the prefetch buffer holds `want` ready comparisons (or the timeout); return how many it holds."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(db_url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            with engine.connect() as conn:
                ready = conn.execute(sqlalchemy.text("select count(*) from comparisons where state = 'ready'")).scalar()
            if ready >= want or time.monotonic() > deadline:
                return ready
            time.sleep(0.1)
    finally:
        engine.dispose()


def call(srv, method: str, path: str, user: str, body: dict | None = None, timeout: float = 30) -> tuple[int, dict]:
    """One HTTP request with a user's bearer token; returns (status, JSON body)."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(srv.url(path), data=data, method=method, headers={
        "Authorization": f"Bearer {srv.users[user]['token']}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as res:
            return res.status, json.loads(res.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def worker_pids(srv) -> set[int]:
    """The pids of the gunicorn workers the server booted, from its log."""
    return {int(p) for p in re.findall(r"Booting worker with pid: (\d+)", srv.log_path.read_text())}


def wait_serving(srv, version: int | None, *, pids: set[int], timeout: float = 90, error: str | None = None) -> dict:
    """Ask /api/serving until every worker process has answered with `version` (and `error`, when given)."""
    seen: dict[int, dict] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = call(srv, "GET", "/api/serving", "opr")
        assert status == 200, body
        seen[body["pid"]] = body
        done = all(p in seen and seen[p]["serving"] == version and (error is None or error in (seen[p]["error"] or ""))
                   for p in pids)
        if done:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"not every process serves {version} (error {error!r}): {seen}\n{srv.log_tail()}")
