"""Publishing checkpoints: every file reaches the disk before the rename, and orphaned temp folders are swept."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def test_import_records_the_prompt_format_and_can_force_it(app, chat_dir, starter_dir):
    """auto: chat where the tokenizer has a chat template; template forces the {input} template on a chat model."""
    from app.lm.checkpoint import load_checkpoint, read_manifest
    from app.versions.store import local_copy
    from worker.checkpoints import import_model

    with app.app_context():
        store = app.config["MODEL_STORE"]
        for fmt, want in (("auto", "chat"), ("template", "template"), ("chat", "chat")):
            _, path = import_model(source=str(chat_dir), store=store, prompt_format=fmt)
            assert read_manifest(local_copy(path))["prompt_format"] == want
            loaded = load_checkpoint(str(local_copy(path)), device="cpu")
            prompt = loaded.format_prompt("Fix it.", system_prompt="Be kind.")
            assert prompt.startswith("<|im_start|>system") if want == "chat" else prompt == "Fix it."
        _, path = import_model(source=str(starter_dir["gpt2"]), store=store)
        assert read_manifest(local_copy(path))["prompt_format"] == "template"
        with pytest.raises(ValueError, match="no chat template"):
            import_model(source=str(starter_dir["gpt2"]), store=store, prompt_format="chat")


def test_flask_models_import_forces_a_format_and_the_versions_page_shows_it(app, runner, chat_dir, starter_dir,
                                                                              users):
    out = runner.invoke(args=["models", "import", str(chat_dir), "--prompt-format", "template"])
    assert out.exit_code == 0 and "as version 2" in out.output, out.output
    out = runner.invoke(args=["models", "import", str(starter_dir["gpt2"]), "--prompt-format", "chat"])
    assert out.exit_code != 0 and "no chat template" in out.output
    operator = users.create("opr", "operator")
    client = app.test_client()
    users.login(client, operator["name"])
    page = client.get("/ops/versions").get_data(as_text=True)
    assert page.count("template prompts") == 2  # the starter and the forced import
    versions = client.get("/api/model-versions", headers=operator["headers"]).json["versions"]
    assert [v["prompt_format"] for v in versions if v["id"] == 2] == ["template"]


def test_a_chat_model_whose_end_token_is_not_its_end_of_turn_is_imported_ending_turns(app, chat_dir, tmp_path):
    """Gemma-style: the template closes turns with one token, the tokenizer's end token is another. The imported
    tokenizer ends with the end of turn (what samples stop at and training completions close with)."""
    import shutil

    from transformers import AutoTokenizer

    from app.lm.checkpoint import end_of_turn, load_checkpoint, read_manifest
    from app.versions.store import local_copy
    from worker.checkpoints import import_model

    source = tmp_path / "gemma-ish"
    shutil.copytree(chat_dir, source)
    tok = AutoTokenizer.from_pretrained(source)
    assert end_of_turn(tok) == "<|im_end|>"
    tok.eos_token = "<|endoftext|>"
    tok.save_pretrained(source)
    with app.app_context():
        _, path = import_model(source=str(source), store=app.config["MODEL_STORE"])
        manifest = read_manifest(local_copy(path))
        loaded = load_checkpoint(str(local_copy(path)), device="cpu")
    assert manifest["eos_token_was"] == "<|endoftext|>" and loaded.tokenizer.eos_token == "<|im_end|>"
