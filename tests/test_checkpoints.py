"""Publishing checkpoints: every file reaches the disk before the rename, and orphaned temp folders are swept."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from worker import checkpoints
from worker.checkpoints import publish_checkpoint, sweep_temp_folders


def save_three(tmp: Path) -> None:
    for name in ("model.safetensors", "config.json", "tokenizer.json"):
        (tmp / name).write_bytes(os.urandom(4096))


def test_every_file_is_fsynced_before_the_rename(tmp_path, monkeypatch):
    """A power cut after the rename must not leave a version of empty files: each file, the manifest and the
    folder are flushed first, and the store after the rename."""
    events = []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def rename(src, dst):
        events.append(("rename", str(src)))
        return real_rename(src, dst)

    monkeypatch.setattr(checkpoints.os, "fsync", fsync)
    monkeypatch.setattr(checkpoints.os, "rename", rename)
    number, path = publish_checkpoint(store=tmp_path, save=save_three, manifest={"kind": "test"})
    assert number == 1 and path == tmp_path / "1"
    renamed = next(i for i, e in enumerate(events) if e[0] == "rename")
    tmp = events[renamed][1]
    before = {Path(p).name for kind, p in events[:renamed] if kind == "fsync"}
    assert {"model.safetensors", "config.json", "tokenizer.json", "manifest.json", Path(tmp).name} <= before
    assert ("fsync", str(tmp_path)) in events[renamed:]
    manifest = json.loads((path / "manifest.json").read_text())
    assert set(manifest["files"]) == {"model.safetensors", "config.json", "tokenizer.json"}


def test_a_failed_save_leaves_nothing(tmp_path):
    def boom(tmp: Path) -> None:
        save_three(tmp)
        raise RuntimeError("disk full")

    try:
        publish_checkpoint(store=tmp_path, save=boom, manifest={})
    except RuntimeError:
        pass
    assert list(tmp_path.iterdir()) == []


def test_the_sweep_removes_only_temp_folders_whose_writer_is_gone(tmp_path):
    """Left by a writer that died or was stopped mid-save: swept. A live writer's, and the versions: kept."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    folders = {
        f".tmp-{dead.stdout.strip()}-abc": True,  # its writer exited
        ".tmp-k2j3h4": True,  # from before temp folders carried a pid
        f".tmp-{os.getpid()}-live": False,  # this process is still writing it
        "1": False,
        "2": False,
    }
    for name in folders:
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.safetensors").write_bytes(b"x")
    removed = sweep_temp_folders(tmp_path)
    assert sorted(removed) == sorted(n for n, gone in folders.items() if gone)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(n for n, gone in folders.items() if not gone)
    assert sweep_temp_folders(tmp_path / "missing") == []
