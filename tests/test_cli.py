"""CLI: users, the starter model, bootstrap, and models list/activate/rollback."""

import re
import shutil
from pathlib import Path

from app.platform.extensions import db
from app.tables import ModelVersion, User
from app.versions.registry import active_version_id


def test_users_create_prints_password_and_token(app, runner):
    res = runner.invoke(args=["users", "create", "zoe", "--role", "admin"])
    assert res.exit_code == 0, res.output
    assert "password: " in res.output and "token: " in res.output
    with app.app_context():
        assert db.session.query(User).filter_by(name="zoe").one().role == "admin"
    again = runner.invoke(args=["users", "create", "zoe"])
    assert again.exit_code == 2 and "already exists" in again.output


def test_token_from_cli_authenticates(app, runner, client):
    out = runner.invoke(args=["users", "create", "tok", "--role", "annotator"]).output
    token = out.split("token: ")[1].split()[0]
    res = client.post("/api/comparisons", json={"prompt": "Send it."}, headers={"Authorization": f"Bearer {token}"})
    assert res.status_code == 201


def test_starter_model_builds_and_registers(app, runner):
    res = runner.invoke(args=["starter-model", "--size", "tiny", "--arch", "t5"])
    assert res.exit_code == 0, res.output
    with app.app_context():
        v = db.session.get(ModelVersion, 2)
        assert v.arch == "seq2seq" and v.manifest["kind"] == "starter"
        assert active_version_id() == 1  # an active version already existed; the new one waits


def test_starter_model_on_an_unmigrated_database_fails_before_training(tmp_path):
    """The schema is asked first: a default build takes minutes, and used to fail only at registration."""
    from app import create_app
    from tests.conftest import make_config

    app = create_app(make_config(backend="sqlite", tmp_path=tmp_path))
    res = app.test_cli_runner().invoke(args=["starter-model", "--size", "tiny"])
    assert res.exit_code == 2 and "flask db upgrade" in res.output
    store = Path(app.config["MODEL_STORE"])
    assert not store.exists() or not any(p.name.isdigit() for p in store.iterdir())


def test_bootstrap_is_idempotent(app, runner):
    res = runner.invoke(args=["models", "bootstrap"])
    assert res.exit_code == 0 and "already registered" in res.output


def test_bootstrap_imports_a_local_base_model(tmp_path, starter_dir):
    """BASE_MODEL may name any local checkpoint folder: it goes through the real from_pretrained path."""
    from app import create_app
    from tests.conftest import make_config, upgrade

    plain = tmp_path / "plain"
    shutil.copytree(starter_dir["gpt2"], plain)
    (plain / "manifest.json").unlink()  # a plain Hugging Face folder, as a user would bring
    app = create_app(make_config(backend="sqlite", tmp_path=tmp_path, BASE_MODEL=str(plain)))
    upgrade(app)
    res = app.test_cli_runner().invoke(args=["models", "bootstrap"])
    assert res.exit_code == 0, res.output
    with app.app_context():
        v = db.session.get(ModelVersion, 1)
        assert v.base_model == str(plain) and active_version_id() == 1
        assert v.manifest["files"]


def test_models_list_activate_rollback(app, runner, starter_dir):
    from app.lm.checkpoint import read_manifest
    from app.versions.registry import register_version

    dest = shutil.copytree(starter_dir["gpt2"], f"{app.config['MODEL_STORE']}/2")
    with app.app_context():
        manifest = read_manifest(dest) | {"parent_version": 1}
        register_version(number=2, path=dest, manifest=manifest)
    assert runner.invoke(args=["models", "activate", "2"]).exit_code == 2  # --reason is required
    res = runner.invoke(args=["models", "activate", "2", "--reason", "try it"])
    assert res.exit_code == 0, res.output
    listing = runner.invoke(args=["models", "list"]).output
    assert "*    2" in listing
    res = runner.invoke(args=["models", "rollback", "--reason", "worse"])
    assert res.exit_code == 0 and "from 2 to 1" in res.output
    with app.app_context():
        assert active_version_id() == 1


def test_models_promote_and_retire_the_challenger(app, runner, starter_dir):
    from tests.conftest import install_child

    install_child(app, starter_dir["gpt2"], number=2, parent=1, activate=False)
    install_child(app, starter_dir["gpt2"], number=3, parent=1, activate=False)
    from app.versions.registry import challenger_version_id, set_challenger

    with app.app_context():
        set_challenger(version_id=2, actor="test", reason="gate")
    listing = runner.invoke(args=["models", "list"]).output
    assert re.search(r"\*\s+1 .*champion", listing) and re.search(r"\s2 .*challenger", listing)
    res = runner.invoke(args=["models", "promote", "3", "--reason", "not it"])
    assert res.exit_code != 0 and "version 3 is not the challenger" in res.output
    res = runner.invoke(args=["models", "retire", "2", "--reason", "lost the arena"])
    assert res.exit_code == 0 and "retired" in res.output
    with app.app_context():
        assert challenger_version_id() is None and active_version_id() == 1
        set_challenger(version_id=3, actor="test", reason="gate")
    res = runner.invoke(args=["models", "promote", "3", "--reason", "won the arena"])
    assert res.exit_code == 0 and "promoted" in res.output
    with app.app_context():
        assert active_version_id() == 3 and challenger_version_id() is None
