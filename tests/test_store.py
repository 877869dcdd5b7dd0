"""The model store on an S3-compatible server (moto's): publish with the manifest last, verified node caches,
LRU eviction, the sweep of uncommitted uploads, and an app that serves from a bucket."""

from __future__ import annotations

import json
import shutil
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from harness.starters import checkpoint_copier


@pytest.fixture
def bucket_url(s3_env):
    return s3_env.bucket(f"models-{uuid.uuid4().hex[:12]}") + "/team/prefloop"


def publish(app, starter: Path, store: str) -> tuple[int, str]:
    from worker.checkpoints import publish_checkpoint

    with app.app_context():
        return publish_checkpoint(store=store, save=checkpoint_copier(starter),
                                  manifest={"kind": "test", "arch": "causal", "parent_version": None})


def keys(s3, bucket_url: str) -> list[str]:
    bucket = bucket_url.removeprefix("s3://").split("/")[0]
    return sorted(o["Key"] for o in s3.client().list_objects_v2(Bucket=bucket).get("Contents", []))


def test_publish_uploads_the_files_then_commits_the_manifest(app, s3_env, bucket_url, starter_dir):
    from app.versions.store import Bucket

    number, location = publish(app, starter_dir["gpt2"], bucket_url)
    assert (number, location) == (1, bucket_url + "/1")
    names = keys(s3_env, bucket_url)
    manifest = Bucket(bucket_url).manifest(1)
    assert names.count("team/prefloop/1/manifest.json") == 1
    assert {f"team/prefloop/{manifest['files_prefix']}{n}" for n in manifest["files"]} <= set(names)
    assert all(len(info["sha256"]) == 64 for info in manifest["files"].values())
    # The worker's own node keeps what it published in its cache, so the gate loads it without a download.
    cached = Path(app.config["MODEL_CACHE"]) / "1"
    assert json.loads((cached / "manifest.json").read_text()) == manifest
    assert publish(app, starter_dir["gpt2"], bucket_url)[0] == 2


def test_two_writers_racing_get_different_numbers(app, s3_env, bucket_url, starter_dir):
    """The conditional PUT of the manifest decides: one writer per number, and neither's files are overwritten."""
    from app.versions.store import Bucket

    out, barrier = [], threading.Barrier(3)

    def write():
        barrier.wait()
        out.append(publish(app, starter_dir["gpt2"], bucket_url)[0])

    threads = [threading.Thread(target=write) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(out) == [1, 2, 3]
    bucket = Bucket(bucket_url)
    assert len({bucket.manifest(n)["files_prefix"] for n in out}) == 3


def test_a_fresh_node_downloads_verifies_and_caches(app, s3_env, bucket_url, starter_dir, tmp_path):
    from app.versions.store import Bucket, local_copy

    publish(app, starter_dir["gpt2"], bucket_url)
    app.config["MODEL_CACHE"] = str(tmp_path / "fresh-node")
    with app.app_context():
        files = Bucket(bucket_url).manifest(1)["files"]
        folder = local_copy(bucket_url + "/1", files=files)
        assert folder == tmp_path / "fresh-node" / "1"
        assert {p.name for p in folder.iterdir()} == set(files) | {"manifest.json"}
        # Cached: the second call downloads nothing (the bucket could be gone).
        s3_env.client().delete_objects(Bucket=bucket_url[5:].split("/")[0], Delete={"Objects": [
            {"Key": k} for k in keys(s3_env, bucket_url)]})
        assert local_copy(bucket_url + "/1", files=files) == folder


def test_a_corrupt_upload_is_refused_and_nothing_is_cached(app, s3_env, bucket_url, starter_dir, tmp_path):
    from app.platform.exceptions import StoreError
    from app.versions.store import Bucket, local_copy

    publish(app, starter_dir["gpt2"], bucket_url)
    bucket = Bucket(bucket_url)
    manifest = bucket.manifest(1)
    name = next(n for n in manifest["files"] if n.endswith(".safetensors"))
    key = f"{bucket.prefix}{manifest['files_prefix']}{name}"
    original = s3_env.client().get_object(Bucket=bucket.bucket, Key=key)["Body"].read()
    s3_env.client().put_object(Bucket=bucket.bucket, Key=key, Body=original[:-8] + b"\0" * 8)  # same size
    app.config["MODEL_CACHE"] = str(tmp_path / "node")
    with app.app_context(), pytest.raises(StoreError, match="does not match its sha256"):
        local_copy(bucket_url + "/1", files=manifest["files"])
    assert [p.name for p in (tmp_path / "node").iterdir() if not p.name.startswith(".lock")] == []


def test_a_manifest_changed_after_registration_is_refused(app, s3_env, bucket_url, starter_dir, tmp_path):
    from app.platform.exceptions import StoreError
    from app.versions.store import Bucket, local_copy

    publish(app, starter_dir["gpt2"], bucket_url)
    bucket = Bucket(bucket_url)
    registered = bucket.manifest(1)["files"]
    tampered = {**registered, "extra.bin": {"bytes": 1, "sha256": "0" * 64}}
    app.config["MODEL_CACHE"] = str(tmp_path / "node")
    with app.app_context(), pytest.raises(StoreError, match="differs from the registered one"):
        local_copy(bucket_url + "/1", files=tampered)


def test_the_sweep_removes_uploads_that_never_got_a_manifest(app, s3_env, bucket_url, starter_dir):
    from app.versions.store import UPLOAD_GRACE, Bucket

    publish(app, starter_dir["gpt2"], bucket_url)
    bucket = Bucket(bucket_url)
    s3_env.client().put_object(Bucket=bucket.bucket, Key=f"{bucket.prefix}uploads/deadbeef/model.safetensors",
                               Body=b"half")
    assert bucket.sweep() == []  # too fresh: it may still be uploading
    later = datetime.now(UTC) + UPLOAD_GRACE + timedelta(minutes=1)
    assert bucket.sweep(now=later) == ["uploads/deadbeef/"]
    left = keys(s3_env, bucket_url)
    assert not any("deadbeef" in k for k in left)
    assert f"team/prefloop/{bucket.manifest(1)['files_prefix']}config.json" in left  # committed: kept


def test_lru_eviction_keeps_the_active_and_the_pinned(app, tmp_path):
    """Over the limit, the least recently used go first; the active version, what a process serves, and a copy used
    in the last 10 minutes (another process of the node may be loading it) stay."""
    import os

    from app.versions.store import evict

    cache = tmp_path / "cache"
    for number, age in ((1, 4000), (2, 3000), (3, 2000), (4, 100)):  # 4: used 100 s ago, maybe loading now
        folder = cache / str(number)
        folder.mkdir(parents=True)
        (folder / "model.bin").write_bytes(b"x" * 300_000)  # 1.2 MB in all: one must go
        stamp = datetime.now().timestamp() - age
        os.utime(folder, (stamp, stamp))
    with app.app_context():  # version 1 is the active one in the app fixture
        removed = evict(cache, limit_mb=1, keep={2})
    assert removed == [3]
    assert sorted(p.name for p in cache.iterdir() if p.is_dir()) == ["1", "2", "4"]


def test_an_app_serves_from_a_bucket_and_refuses_an_activation_of_a_broken_version(
        app, client, annotator, operator, s3_env, bucket_url, starter_dir, tmp_path):
    """A version registered at s3://... is downloaded by the serving process and served; one whose file vanished
    from the bucket is refused at activation with a clear 409."""
    from app.lm.checkpoint import read_manifest
    from app.versions.registry import register_version
    from app.versions.serving import get_holder
    from app.versions.store import Bucket, local_copy

    app.config["MODEL_STORE"] = bucket_url
    number, location = publish(app, starter_dir["gpt2"], bucket_url)  # version 1 in the bucket: 2 in the registry
    shutil.rmtree(Path(app.config["MODEL_CACHE"]))  # this node has never seen it
    with app.app_context():
        register_version(number=2, path=location, manifest=read_manifest(local_copy(location)))
    shutil.rmtree(Path(app.config["MODEL_CACHE"]))
    res = client.post("/api/model-versions/2/activate", json={"reason": "from the bucket"},
                      headers=operator["headers"])
    assert res.status_code == 200, res.json
    c = client.post("/api/comparisons", json={"prompt": "Fix the sink."}, headers=annotator["headers"])
    assert c.status_code == 201 and get_holder(app).status()["serving"] == 2
    assert (Path(app.config["MODEL_CACHE"]) / "1" / "manifest.json").is_file()
    bucket = Bucket(bucket_url)
    manifest = bucket.manifest(1)
    s3_env.client().delete_object(Bucket=bucket.bucket, Key=f"{bucket.prefix}{manifest['files_prefix']}config.json")
    client.post("/api/model-versions/1/activate", json={"reason": "back"}, headers=operator["headers"])
    res = client.post("/api/model-versions/2/activate", json={"reason": "again"}, headers=operator["headers"])
    assert res.status_code == 409 and "config.json is missing" in res.json["error"]


def test_several_nodes_refuse_sqlite_and_a_per_machine_secret(tmp_path):
    from app import create_app
    from app.platform.exceptions import ConfigError

    base = {"SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'x.db'}", "NODES": 2, "SECRET_KEY": "s",
            "REDIS_URL": "redis://127.0.0.1:6379/0"}
    with pytest.raises(ConfigError, match="cannot share a SQLite file"):
        create_app(base)
    with pytest.raises(ConfigError, match="set SECRET_KEY, the same on every node"):
        create_app(base | {"SQLALCHEMY_DATABASE_URI": "postgresql+psycopg://u@h/db", "SECRET_KEY": None})
    with pytest.raises(ConfigError, match="set REDIS_URL"):
        create_app(base | {"SQLALCHEMY_DATABASE_URI": "postgresql+psycopg://u@h/db", "REDIS_URL": None})


def test_bootstrap_into_a_bucket_then_a_fresh_node_serves_it(tmp_path, s3_env, bucket_url):
    """`flask models bootstrap` (what `make run` calls) with MODEL_STORE=s3://...: the committed starter is
    published to the bucket and registered there; a node with an empty cache serves it with no other step."""
    from app import create_app
    from app.platform.extensions import db
    from app.tables import ModelVersion
    from app.versions.registry import active_version_id
    from app.versions.serving import get_holder
    from tests.conftest import make_config, upgrade

    app = create_app(make_config(backend="sqlite", tmp_path=tmp_path, MODEL_STORE=bucket_url,
                                 MODEL_CACHE=str(tmp_path / "bootstrap-cache")))
    upgrade(app)
    res = app.test_cli_runner().invoke(args=["models", "bootstrap"])
    assert res.exit_code == 0, res.output
    with app.app_context():
        version = db.session.get(ModelVersion, 1)
        assert version.path == bucket_url + "/1" and active_version_id() == 1
        assert version.manifest["prebuilt"] is True
    app.config["MODEL_CACHE"] = str(tmp_path / "fresh-node")
    loaded = get_holder(app).current()
    assert loaded.version_id == 1 and (tmp_path / "fresh-node" / "1" / "manifest.json").is_file()
    with app.app_context():
        db.session.remove()
        db.engine.dispose()
