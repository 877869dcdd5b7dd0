"""Fixtures: tiny starter models (built once), an app per test on a fresh migrated database, clients, users."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from harness import servers  # noqa: E402
from harness.starters import install_starter  # noqa: E402
from tests import services  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _threads():
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def starter_dir(tmp_path_factory):
    """Build the tiny starters once per session: {'gpt2': path, 't5': path}."""
    from worker.starter import StarterConfig, build_starter

    out = {}
    for arch in ("gpt2", "t5"):
        store = tmp_path_factory.mktemp(f"starter-{arch}")
        _, path = build_starter(StarterConfig.tiny(arch), store=store, log=lambda *_: None)
        out[arch] = path
    return out


@pytest.fixture(scope="session")
def chat_dir(starter_dir, tmp_path_factory):
    """The tiny GPT-2 starter as a chat model (ChatML template, <|im_end|> as its end token), built once."""
    from harness.starters import chat_checkpoint

    return chat_checkpoint(starter_dir["gpt2"], tmp_path_factory.mktemp("chat") / "chatml")


@pytest.fixture
def backend(request):
    """sqlite unless a test module parametrizes it (see services.BOTH_BACKENDS)."""
    return getattr(request, "param", "sqlite")


@pytest.fixture
def arch():
    """The starter architecture an app serves; override with parametrize."""
    return "gpt2"


def make_config(*, backend: str, tmp_path: Path, **extra) -> dict:
    """A test config: fresh database, private model store, no background threads."""
    if backend == "postgres":
        url = services.postgres_url()
        servers.reset_postgres(url)
    else:
        url = f"sqlite:///{tmp_path / 'test.db'}"
    return {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": url,
        "MODEL_STORE": str(tmp_path / "models"),
        "MODEL_CACHE": str(tmp_path / "model-cache"),
        "REDIS_URL": None,
        "PREFETCH_SIZE": 0,
        "MODEL_CHECK_SECONDS": 0.0,
        "MAX_NEW_TOKENS": 16,
        "SECRET_KEY": "test",
        # Login counts per app, not in the shared test Redis, whatever REDIS_URL a test gives (tests that check the
        # Redis store set this themselves).
        "RATELIMIT_STORAGE_URI": "memory://",
        "GENERATION_LIMIT": "100000 per minute",  # tests click faster than a person may; its own tests lower it
    } | extra


def spy_sample_rows(monkeypatch) -> list[tuple[int, int]]:
    """Record (prompts, samples per prompt) of every call of the sampling loop (app.lm.sampling._sample_rows)."""
    from app.lm import sampling

    calls, original = [], sampling._sample_rows
    monkeypatch.setattr(sampling, "_sample_rows",
                        lambda loaded, enc, n, **k: calls.append((enc["input_ids"].shape[0], n))
                        or original(loaded, enc, n, **k))
    return calls


def install_child(app, path: Path, *, number: int, parent: int, activate: bool = True) -> int:
    """Copy a starter into the store as version `number`, a child of `parent` (the arena's default pair)."""
    from app.lm.checkpoint import read_manifest
    from app.versions.registry import activate_version, register_version

    dest = Path(app.config["MODEL_STORE"]) / str(number)
    shutil.copytree(path, dest)
    with app.app_context():
        register_version(number=number, path=dest, manifest=read_manifest(dest) | {"parent_version": parent})
        if activate:
            activate_version(version_id=number, actor="test", reason="child")
    return number


def upgrade(app) -> None:
    """Run the real migrations."""
    from flask_migrate import upgrade as alembic_upgrade

    with app.app_context():
        alembic_upgrade()


@pytest.fixture
def app(backend, arch, tmp_path, starter_dir):
    """An app on a fresh, migrated database with the tiny starter active."""
    from app import create_app
    from app.platform.extensions import db

    app = create_app(make_config(backend=backend, tmp_path=tmp_path))
    upgrade(app)
    install_starter(app, starter_dir[arch])
    yield app
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


class Users:
    """Create users and hand out bearer headers or logged-in clients."""

    def __init__(self, app):
        self.app = app

    def create(self, name: str, role: str = "annotator", password: str = "pw") -> dict:
        from app.accounts.users import create_user

        with self.app.app_context():
            user, password, token = create_user(name=name, role=role, password=password)
            return {"id": user.id, "name": name, "password": password, "token": token,
                    "headers": {"Authorization": f"Bearer {token}"}}

    def login(self, client, name: str, password: str = "pw"):
        if client.get("/auth/login").status_code == 302:  # someone is logged in here: the page sends them on
            for cookie in ("session", "remember_token"):
                client.delete_cookie(cookie)
        page = client.get("/auth/login").get_data(as_text=True)
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        return client.post("/auth/login", data={"name": name, "password": password, "csrf_token": token})


@pytest.fixture
def users(app):
    return Users(app)


@pytest.fixture
def annotator(users):
    return users.create("ann", "annotator")


@pytest.fixture
def admin(users):
    return users.create("adm", "admin")


@pytest.fixture
def operator(users):
    return users.create("opr", "operator")


# Every JSON answer a test client of the `app` fixture gets is checked against the spec the app publishes.


def response_problem(spec: dict, *, method: str, path: str, status: int, mimetype: str, body) -> str | None:
    """Why this answer breaks the spec (undocumented status, other media type, schema mismatch), or None.

    Routes and methods the spec does not describe are not judged (rq-dashboard, the pages, a 405)."""
    import jsonschema_rs

    template = next((t for t in spec["paths"] if re.fullmatch(re.escape(t).replace(r"\{id\}", "[^/]+"), path)),
                    None)
    operation = spec["paths"].get(template, {}).get(method.lower())
    if operation is None:
        return None
    where = f"{method} {path} ({template}) answered {status}"
    answer = operation["responses"].get(str(status))
    if answer is None:
        return f"{where}, a status the spec does not list"
    if mimetype not in answer["content"]:
        return f"{where} as {mimetype}; the spec says {', '.join(answer['content'])}"
    if mimetype != "application/json":
        return None
    schema = answer["content"][mimetype]["schema"] | {"components": spec["components"]}
    errors = [f"{'/'.join(map(str, e.instance_path)) or '(body)'}: {e.message}"
              for e in jsonschema_rs.Draft202012Validator(schema).iter_errors(body)]
    return f"{where}, which breaks its schema: {'; '.join(errors)}" if errors else None


class SpecCheckedClient(FlaskClient):
    """A test client that fails the test whose request got an answer the OpenAPI spec does not describe."""

    def open(self, *args, **kwargs):
        from app.web.openapi import openapi_spec

        response = super().open(*args, **kwargs)
        extensions = self.application.extensions
        if "test_openapi_spec" not in extensions:  # the routes are fixed once the app is built
            extensions["test_openapi_spec"] = openapi_spec(self.application)
        spec = extensions["test_openapi_spec"]
        problem = response_problem(spec, method=response.request.method, path=response.request.path,
                                   status=response.status_code, mimetype=response.mimetype,
                                   body=response.get_json(silent=True))
        if problem:
            raise AssertionError(problem)
        return response


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef, request):
    """Give the `app` fixture's app the checking client, leaving the fixture itself as it is."""
    result = yield
    if fixturedef.argname == "app" and isinstance(result, Flask):
        result.test_client_class = SpecCheckedClient
    return result


@pytest.fixture(scope="session")
def s3_server():
    """One moto S3 server for the session (see harness/servers.S3Server)."""
    try:
        server = servers.S3Server()
    except servers.ServerUnavailable as exc:
        services.unavailable("moto_server", str(exc))
    yield server
    server.stop()


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """Point this process's boto3 at the test S3 server."""
    for key, value in s3_server.env.items():
        monkeypatch.setenv(key, value)
    return s3_server
