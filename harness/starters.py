"""Starters put into a model store as versions: copied into a folder, or published into a bucket."""

from __future__ import annotations

import shutil
from pathlib import Path


def install_starter(app, path: Path) -> int:
    """Copy a starter into the app's store as version 1 and activate it."""
    from app.lm.checkpoint import read_manifest
    from app.versions.registry import activate_version, register_version

    store = Path(app.config["MODEL_STORE"])
    store.mkdir(parents=True, exist_ok=True)
    dest = store / "1"
    shutil.copytree(path, dest)
    with app.app_context():
        register_version(number=1, path=dest, manifest=read_manifest(dest))
        activate_version(version_id=1, actor="test", reason="starter")
    return 1


def checkpoint_copier(source: Path):
    """A save() for publish_checkpoint that copies a checkpoint folder's files (its manifest is written anew) and
    carries over what serving needs from the old manifest."""
    from app.lm.checkpoint import read_manifest

    def save(tmp: Path) -> dict:
        for f in Path(source).iterdir():
            if f.is_file() and f.name != "manifest.json":
                shutil.copy(f, tmp / f.name)
        return {k: v for k, v in read_manifest(Path(source)).items() if k in ("prompt_template", "arch", "base_model")}

    return save


def publish_starter(app, path: Path) -> int:
    """Publish a starter into the app's bucket store (s3://) as a new version, register and activate it."""
    from app.lm.checkpoint import read_manifest
    from app.versions.registry import activate_version, register_version
    from app.versions.store import local_copy
    from worker.checkpoints import publish_checkpoint

    with app.app_context():
        number, location = publish_checkpoint(store=app.config["MODEL_STORE"], save=checkpoint_copier(path),
                                              manifest={"kind": "starter", "parent_version": None})
        register_version(number=number, path=location, manifest=read_manifest(local_copy(location)))
        activate_version(version_id=number, actor="test", reason="starter")
    return number
