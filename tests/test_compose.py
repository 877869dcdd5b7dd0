"""docker-compose.yml, Dockerfile and .dockerignore: parsed and cross-checked (Docker itself is not needed)."""

from __future__ import annotations

import fnmatch
import importlib.util
import os
import re
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


@pytest.fixture(scope="module")
def compose() -> dict:
    # safe_load resolves the x-app/x-env anchors through `<<` merge keys, as docker compose does.
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile as (INSTRUCTION, arguments), comments dropped and continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


def volume_mounts(service: dict) -> dict[str, str]:
    """Named-volume mounts of a service as {volume name: container path}; bind mounts are left out."""
    mounts = {}
    for entry in service.get("volumes", []):
        if isinstance(entry, str):  # short syntax: name:/path[:mode]; a bind starts with . / or ~
            source, target = entry.split(":")[:2]
            if not source.startswith((".", "/", "~")):
                mounts[source] = target
        elif entry.get("type", "volume") == "volume" and "source" in entry:  # no source: anonymous, per container
            mounts[entry["source"]] = entry["target"]
    return mounts


def anonymous_volumes(service: dict) -> list[str]:
    """Container paths of a service's anonymous volumes (long syntax without a source): one per container."""
    return [e["target"] for e in service.get("volumes", [])
            if isinstance(e, dict) and e.get("type", "volume") == "volume" and "source" not in e]


# What a stack needs from the host: the secrets compose refuses to start without (`${VAR:?message}`).
HOST = {"SECRET_KEY": "k" * 32, "POSTGRES_PASSWORD": "pgSecret1", "REDIS_PASSWORD": "redisSecret2",
        "MINIO_ROOT_USER": "prefloopStore", "MINIO_ROOT_PASSWORD": "minioSecret3"}


class Refused(ValueError):
    """compose would refuse to start: a `${VAR:?message}` variable is unset."""


def interpolate(value: str, env: dict[str, str]) -> str:
    """Expand `${VAR}`, `${VAR:-default}`, `${VAR:?message}` and `$$` as compose does with the host's environment
    (and, for plain `${VAR}`, as the container's sh then does with the service's)."""

    def expand(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, kind, word = match.group(1), match.group(2), match.group(3) or ""
        if kind == "?" and not env.get(name):
            raise Refused(f"{name}: {word}")
        return env.get(name) or ("" if kind == "?" else word)

    return re.sub(r"\$\$|\$\{(\w+)(?::([-?])([^}]*))?\}", expand, str(value))


def web_env(services, host: dict[str, str] | None = None, name: str = "web") -> dict[str, str]:
    """A container's environment (the web's by default) once compose has interpolated it with `host`."""
    return {key: interpolate(value, HOST | (host or {})) for key, value in services[name]["environment"].items()}


def web_steps(services, host: dict[str, str] | None = None, name: str = "web") -> list[list[str]]:
    """A service's `sh -c` script (the web's by default) split into its `&&` steps, expanded by compose then by the
    container's sh and tokenized like the shell would."""
    command = services[name]["command"]
    assert command[:2] == ["sh", "-c"], command
    script = interpolate(interpolate(command[2], HOST | (host or {})), web_env(services, host, name))
    return [shlex.split(step) for step in script.split("&&")]


def gunicorn_args(services, host: dict[str, str] | None = None) -> list[str]:
    """The arguments of the gunicorn step, after `exec gunicorn`."""
    last = web_steps(services, host)[-1]
    assert last[:2] == ["exec", "gunicorn"], last
    return last[2:]


def option(args: list[str], name: str) -> str:
    """The value after a `--name value` option."""
    assert name in args, f"{name} missing from {args}"
    return args[args.index(name) + 1]


def env_defaults(dockerfile) -> dict[str, str]:
    """ENV and ARG values from the Dockerfile (ENV k=v pairs, ARG k=default)."""
    values = {}
    for word, rest in dockerfile:
        if word in {"ENV", "ARG"}:
            for pair in shlex.split(rest):
                key, _, value = pair.partition("=")
                values[key] = value
    return values


def requirement_pin(name: str) -> str:
    """The `name==version` pin from requirements.txt."""
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        if line.split("==")[0].strip() == name:
            return line.strip()
    raise AssertionError(f"{name} is not pinned in requirements.txt")


def test_all_services_present(services):
    """The stack: a one-shot migrate, web nodes behind a proxy, workers, redis, postgres, and MinIO with its init."""
    assert {"migrate", "web", "proxy", "worker", "redis", "postgres", "minio", "minio-init"} == set(services)


def test_web_and_worker_scale(services):
    """`--scale web=3 --scale worker=2` works: neither has a container name or a published host port (the proxy
    is the one door), and each replica gets its own model cache."""
    for name in ("web", "worker"):
        assert "container_name" not in services[name] and "ports" not in services[name], name
        assert anonymous_volumes(services[name]) == ["/cache"], name
    assert [n for n, svc in services.items() if "ports" in svc] == ["proxy"]


def test_web_and_worker_share_one_image(services):
    """Migrate, web and worker run the same image, built from the repo root where the Dockerfile is."""
    web, worker = services["web"], services["worker"]
    assert web["image"] == worker["image"] == services["migrate"]["image"] == "prefloop:latest"
    assert web["build"] == worker["build"] == services["migrate"]["build"]
    context = ROOT / web["build"]["context"]
    assert context.resolve() == ROOT
    assert (context / web["build"].get("dockerfile", "Dockerfile")).is_file()


def test_migrate_runs_once_then_the_web_serves(services):
    """A one-shot service runs `flask db upgrade` then `flask models bootstrap`, so web replicas never race a
    migration; the web only execs gunicorn (so it gets signals)."""
    assert web_steps(services, name="migrate") == [["flask", "db", "upgrade"], ["flask", "models", "bootstrap"]]
    steps = web_steps(services)
    assert len(steps) == 1 and steps[0][:2] == ["exec", "gunicorn"]


@pytest.mark.parametrize("host_env", [{}, {"PORT": "8123"}], ids=["default", "PORT=8123"])
def test_web_binds_the_published_port(services, host_env):
    """gunicorn binds 0.0.0.0 on the container port that is published, and PORT says the same; setting PORT
    moves all three (the command reads it rather than repeating 5000)."""
    bind = option(gunicorn_args(services, host_env), "--bind")
    host, _, port = bind.rpartition(":")
    assert host == "0.0.0.0"
    assert port == host_env.get("PORT", "5000")
    assert [interpolate(p, HOST | host_env) for p in services["web"]["expose"]] == [port]
    published = {interpolate(p, HOST | host_env).split(":")[-1] for p in services["proxy"]["ports"]}
    assert port in published
    assert web_env(services, host_env)["PORT"] == port
    conf = interpolate(proxy_conf(services), HOST | host_env)
    assert f"listen {port};" in conf and f"set $web http://web:{port};" in conf


def proxy_conf(services) -> str:
    """The nginx config the proxy mounts (an inline compose config)."""
    compose = yaml.safe_load(COMPOSE.read_text())
    (mount,) = services["proxy"]["configs"]
    assert mount["target"] == "/etc/nginx/conf.d/default.conf"
    return compose["configs"][mount["source"]]["content"]


def test_the_proxy_balances_over_every_replica_without_sticky_sessions(services):
    """nginx re-resolves `web` through Docker's DNS (a variable in proxy_pass) so scaled replicas are all used;
    it forwards the client's address (PROXY_HOPS=1 trusts one hop) and never buffers or cuts a streamed export."""
    conf = interpolate(proxy_conf(services), HOST)
    assert "resolver 127.0.0.11 valid=10s;" in conf
    assert "proxy_pass $web;" in conf
    assert "X-Forwarded-For $proxy_add_x_forwarded_for" in conf
    assert "proxy_buffering off;" in conf
    assert "ip_hash" not in conf and "sticky" not in conf
    assert web_env(services)["PROXY_HOPS"] == "1"


def test_web_command_references_real_things(tmp_path, services):
    """gunicorn's config file and app factory exist, and `flask db upgrade` / `flask models bootstrap` resolve."""
    from flask.cli import FlaskGroup

    from app import create_app

    args = gunicorn_args(services)
    assert (ROOT / option(args, "--config")).is_file()
    assert args[-1] == "app:create_app()"
    assert (ROOT / "migrations").is_dir()  # `flask db upgrade` reads it from the image

    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'c.db'}",
                      "REDIS_URL": None, "MODEL_STORE": str(tmp_path / "models"), "SECRET_KEY": "t"})
    # FlaskGroup, not app.cli: `db` comes from Flask-Migrate's entry point, as on the `flask` command line.
    cli = FlaskGroup(create_app=lambda: app)
    runner = app.test_cli_runner()
    for step in web_steps(services, name="migrate"):
        result = runner.invoke(cli, [*step[1:], "--help"])
        assert result.exit_code == 0, (step, result.output)


def test_worker_runs_the_worker_module(services):
    """The worker runs `python -m worker`, that module exists, and it reads the WORKER_MODE compose sets."""
    worker = services["worker"]
    assert worker["command"] == ["python", "-m", "worker"]
    assert (ROOT / "worker" / "__main__.py").is_file()
    assert importlib.util.find_spec("worker.__main__") is not None
    assert worker["environment"]["WORKER_MODE"] == "simple"
    assert '"WORKER_MODE"' in (ROOT / "worker" / "__main__.py").read_text()


def test_worker_reserves_an_nvidia_gpu(services):
    """Each worker replica reserves one NVIDIA GPU; nothing else reserves any (the web serves on CPU)."""
    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) and d.get("count") == 1
               for d in devices), devices
    assert [name for name, svc in services.items() if "deploy" in svc] == ["worker"]


def test_versions_live_in_the_bucket_minio_init_creates(services, dockerfile):
    """MODEL_STORE is a bucket on the minio service, which minio-init creates with the credentials every app
    container uses; each container caches at MODEL_CACHE on its own volume. (The image's own default stays a
    folder, for a single container.)"""
    env = web_env(services)
    store = urlsplit(env["MODEL_STORE"])
    assert store.scheme == "s3" and store.path.strip("/")
    endpoint = urlsplit(env["AWS_ENDPOINT_URL"])
    assert endpoint.hostname == "minio" and endpoint.port == 9000 and services["minio"]["image"].startswith("minio/")
    init = services["minio-init"]
    script = interpolate(interpolate(init["entrypoint"][2], HOST), web_env(services, name="minio-init"))
    assert f"mc mb --ignore-existing store/{store.hostname}" in script
    assert "http://minio:9000" in script
    minio = web_env(services, name="minio")
    assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == (minio["MINIO_ROOT_USER"],
                                                                        minio["MINIO_ROOT_PASSWORD"])
    assert anonymous_volumes(services["web"]) == [env["MODEL_CACHE"]]
    assert env_defaults(dockerfile)["MODEL_STORE"] == "/models"


def test_shared_environment(services):
    """Migrate, web and worker get the same settings (the worker adds only WORKER_MODE), with NODES above 1 (so
    SQLite and a generated key are refused), and SECRET_KEY has no default."""
    web_env, worker_env = services["web"]["environment"], services["worker"]["environment"]
    assert {k: v for k, v in worker_env.items() if k != "WORKER_MODE"} == web_env == services["migrate"]["environment"]
    assert int(web_env["NODES"]) > 1
    assert web_env["FLASK_APP"] == "app:create_app"
    # `${VAR:?msg}` makes compose refuse to start without it, rather than sign sessions with a public key.
    assert web_env["SECRET_KEY"].startswith("${SECRET_KEY:?")


def test_database_url_matches_postgres(services):
    """DATABASE_URL names the postgres service, its port, and the user, password and database it is created with."""
    url = make_url(web_env(services)["DATABASE_URL"])
    pg = {key: interpolate(value, HOST) for key, value in services["postgres"]["environment"].items()}
    assert url.drivername == "postgresql+psycopg"  # psycopg 3 is what requirements.txt installs
    assert url.host in services and url.host == "postgres"
    assert url.port == 5432
    assert (url.username, url.password, url.database) == (pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"],
                                                          pg["POSTGRES_DB"])


def test_redis_url_matches_redis(services):
    """REDIS_URL names the redis service on the default port."""
    url = urlsplit(web_env(services)["REDIS_URL"])
    assert url.scheme == "redis"
    assert url.hostname in services and url.hostname == "redis"
    assert url.port == 6379
    assert services["redis"]["image"].startswith("redis:7")


def test_postgres_data_on_named_volume(compose, services):
    """Postgres keeps its data directory on a declared named volume, so it survives `docker compose down`."""
    mounts = volume_mounts(services["postgres"])
    names = [name for name, target in mounts.items() if target == "/var/lib/postgresql/data"]
    assert len(names) == 1
    assert names[0] in (compose.get("volumes") or {})
    assert services["postgres"]["image"].startswith("postgres:16")


def test_every_named_volume_is_declared(compose, services):
    """Each named volume a service mounts is declared under the top-level `volumes` key."""
    declared = set(compose.get("volumes") or {})
    used = {name for service in services.values() for name in volume_mounts(service)}
    assert used, "no named volumes found"
    assert used <= declared, used - declared


def test_startup_order(services):
    """minio-init waits for MinIO; migrate for the database, Redis and the bucket; web and workers for migrate;
    the proxy for a healthy web."""
    healthy, done = {"condition": "service_healthy"}, {"condition": "service_completed_successfully"}
    assert services["minio-init"]["depends_on"] == {"minio": healthy}
    assert services["migrate"]["depends_on"] == {"postgres": healthy, "redis": healthy, "minio-init": done}
    assert services["web"]["depends_on"] == {"migrate": done, "postgres": healthy, "redis": healthy}
    assert services["worker"]["depends_on"] == {"migrate": done, "postgres": healthy, "redis": healthy}
    assert services["proxy"]["depends_on"] == {"web": healthy}
    # service_healthy on a service without a healthcheck would never be satisfied.
    for name in ("web", "postgres", "redis", "minio"):
        assert "healthcheck" in services[name], name


def test_backing_service_healthchecks(services):
    """redis is checked with `redis-cli ping`, postgres with pg_isready for its own user and database."""
    assert services["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    test = services["postgres"]["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL"
    argv = shlex.split(test[1])
    pg = services["postgres"]["environment"]
    assert argv[0] == "pg_isready"
    assert option(argv, "-U") == pg["POSTGRES_USER"] and option(argv, "-d") == pg["POSTGRES_DB"]


def test_restart_policy(services):
    """Every long-running service restarts unless stopped; the one-shot ones run once."""
    for name, service in services.items():
        assert service.get("restart") == ("no" if name in ("migrate", "minio-init") else "unless-stopped"), name


def test_web_healthcheck_passes_against_the_app_and_fails_without_it(tmp_path, services):
    """The web healthcheck command, run for real, exits 0 against the app's /healthz and non-zero when it is down."""
    from werkzeug.serving import make_server

    from app import create_app

    test = services["web"]["healthcheck"]["test"]
    assert test[:2] == ["CMD", "python"]  # python, not curl: the slim image has no curl
    assert "http://127.0.0.1:%s/healthz' % os.environ['PORT']" in test[-1]  # the port gunicorn binds

    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'h.db'}",
                      "REDIS_URL": None, "MODEL_STORE": str(tmp_path / "models"), "SECRET_KEY": "t"})
    server = make_server("127.0.0.1", 0, app)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    # Same command, with PORT set to this server's port, and this interpreter standing in for the image's `python`.
    argv = [sys.executable, *test[2:]]
    env = {**os.environ, "PORT": str(server.port)}
    try:
        up = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env)
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
    assert up.returncode == 0, up.stderr
    down = subprocess.run(argv, capture_output=True, text=True, timeout=30, env=env)
    assert down.returncode != 0


def test_dockerfile_installs_cuda_torch_before_requirements(dockerfile, compose):
    """torch (the requirements.txt pin) comes from TORCH_INDEX_URL, defaulting to cu128, before `pip install -r`."""
    runs = [rest for word, rest in dockerfile if word == "RUN"]
    torch_step = next(i for i, r in enumerate(runs) if "${TORCH_INDEX_URL}" in r or "$TORCH_INDEX_URL" in r)
    reqs_step = next(i for i, r in enumerate(runs) if "pip install -r requirements.txt" in r)
    assert torch_step < reqs_step
    assert requirement_pin("torch") in shlex.split(runs[torch_step])
    default = env_defaults(dockerfile)["TORCH_INDEX_URL"]
    assert default == "https://download.pytorch.org/whl/cu128"
    # The compose build arg falls back to the same index, so `docker compose build` and `docker build` agree.
    assert compose["services"]["web"]["build"]["args"]["TORCH_INDEX_URL"] == f"${{TORCH_INDEX_URL:-{default}}}"
    # The ARG must be declared before the RUN that expands it, or it expands to nothing.
    arg_at = next(i for i, (w, r) in enumerate(dockerfile) if w == "ARG" and r.startswith("TORCH_INDEX_URL"))
    run_at = [i for i, (w, _) in enumerate(dockerfile) if w == "RUN"][torch_step]
    assert arg_at < run_at


def test_dockerfile_layout(dockerfile):
    """python:3.11-slim, WORKDIR /app, requirements copied (and installed) before the source, the app's ENV set."""
    assert dockerfile[0] == ("FROM", "python:3.11-slim")
    assert ("WORKDIR", "/app") in dockerfile
    copy_reqs = dockerfile.index(("COPY", "requirements.txt ."))
    copy_src = dockerfile.index(("COPY", ". ."))
    install = next(i for i, (w, r) in enumerate(dockerfile) if w == "RUN" and "-r requirements.txt" in r)
    assert copy_reqs < install < copy_src  # a source change must not invalidate the dependency layers
    env = env_defaults(dockerfile)
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["FLASK_APP"] == "app:create_app"
    assert env["MODEL_STORE"] == "/models"


def test_dockerignore_keeps_context_to_source():
    """The build context leaves out the venv, git, local state, weights and bench output, but keeps the source."""
    patterns = [p.strip() for p in DOCKERIGNORE.read_text().splitlines() if p.strip() and not p.startswith("#")]
    for needed in (".venv", ".git", "instance", "models/*", "bench/out"):
        assert needed in patterns, needed
    # fnmatch approximates Docker's matcher well enough for these plain paths.
    for kept in ("requirements.txt", "app/gunicorn_conf.py", "worker/__main__.py", "migrations/env.py",
                 "templates", "static"):
        assert not any(fnmatch.fnmatch(kept, p) for p in patterns if not p.startswith("!")), kept
    # The committed starter is source: re-included after models/*, so an image seeds its empty store from it.
    assert patterns.index("!models/prebuilt") > patterns.index("models/*")


@pytest.mark.parametrize("secret", ["MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"])
def test_store_credentials_come_from_the_environment(services, secret):
    """The object store's credentials are not in the file either: compose refuses to start without them."""
    with pytest.raises(Refused, match=secret):
        web_env(services, {secret: ""})
    with pytest.raises(Refused, match=secret):
        web_env(services, {secret: ""}, name="minio")


@pytest.mark.parametrize("secret", ["POSTGRES_PASSWORD", "REDIS_PASSWORD"])
def test_passwords_come_from_the_environment(services, secret):
    """Neither password is written in the file: both come from the host, compose refuses to start without them,
    and the URLs web and worker connect with carry what the database and Redis are started with."""
    text = COMPOSE.read_text()
    assert "prefloop:prefloop@" not in text and "POSTGRES_PASSWORD: prefloop" not in text
    with pytest.raises(Refused, match=secret):
        web_env(services, {secret: ""})
    env = web_env(services, {secret: "fromTheHost9"})
    assert interpolate(services["postgres"]["environment"]["POSTGRES_PASSWORD"], HOST) == HOST["POSTGRES_PASSWORD"]
    assert (make_url(env["DATABASE_URL"]).password if secret == "POSTGRES_PASSWORD"
            else urlsplit(env["REDIS_URL"]).password) == "fromTheHost9"


def test_redis_requires_the_password_and_the_healthcheck_has_it(services):
    """The redis service's own command, run with a local redis-server: without the password nothing is answered,
    with REDIS_URL's password it is, and the healthcheck's redis-cli authenticates through REDISCLI_AUTH."""
    import shutil

    import redis

    from harness.live import free_port

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not on PATH")
    service = services["redis"]
    env = {key: interpolate(value, HOST) for key, value in service["environment"].items()}
    assert service["command"][:2] == ["sh", "-c"] and env["REDISCLI_AUTH"] == HOST["REDIS_PASSWORD"]
    assert service["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    port = free_port()
    script = interpolate(service["command"][2], HOST) + f" --port {port} --bind 127.0.0.1 --save '' --appendonly no"
    proc = subprocess.Popen(["sh", "-c", script], env={**os.environ, **env}, stdout=subprocess.DEVNULL)
    try:
        url = urlsplit(web_env(services)["REDIS_URL"])
        authed = redis.Redis(port=port, password=url.password, socket_connect_timeout=1)
        for _ in range(50):
            try:
                assert authed.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.1)
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port, socket_connect_timeout=1).ping()
        if shutil.which("redis-cli"):
            ping = subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True,
                                  env={**os.environ, **env}, timeout=10)
            assert ping.stdout.strip() == "PONG", ping
    finally:
        proc.terminate()
        proc.wait(timeout=10)
