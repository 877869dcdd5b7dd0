"""The one place that writes checkpoints: temp folder, manifest, atomic rename."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from app.platform.processes import pid_alive
from app.versions.files import file_digests
from app.versions.store import is_remote

LIBRARIES = ("torch", "transformers", "trl", "peft", "tokenizers")
TEMP = ".tmp-"  # where a version is written before its rename; hidden, so nothing takes it for a version


def library_versions() -> dict:
    """Versions of the libraries a checkpoint depends on, for the manifest."""
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def next_number(store: Path) -> int:
    """One more than the highest numbered version folder."""
    numbers = [int(p.name) for p in store.iterdir() if p.is_dir() and p.name.isdigit()]
    return max(numbers, default=0) + 1


def fsync_path(path: Path) -> None:
    """Flush a file's or a folder's contents (a folder: its entries) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_prefix() -> str:
    """The name a writer's temp folders start with: its pid, so the startup sweep knows whose are orphaned."""
    return f"{TEMP}{os.getpid()}-"


def sweep_temp_folders(store: str | Path) -> list[str]:
    """Remove the temp folders of writers that are gone (a crash or a stop mid-save); return their names."""
    if is_remote(store):
        return []  # a bucket's unfinished uploads: app.versions.store.Bucket.sweep
    store = Path(store)
    if not store.is_dir():
        return []
    removed = []
    for path in sorted(store.glob(f"{TEMP}*")):
        pid = path.name.removeprefix(TEMP).split("-", 1)[0]
        if path.is_dir() and not (pid.isdigit() and pid_alive(int(pid))):  # no pid: a folder from before pids
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path.name)
    return removed


def publish_checkpoint(*, store: str | Path, save: Callable[[Path], dict | None], manifest: dict) -> tuple[int, Path]:
    """Write a new immutable version folder and return (number, path).

    `save(tmp)` writes the model files and may return more manifest fields. The folder only appears under its number
    once it is complete: a crash leaves a hidden .tmp-* folder, never a half version that looks whole. Every file
    is fsynced before the rename, and the store after it, so a power cut cannot leave a renamed folder of empty
    files (the rename reaches the disk before file data that is not flushed).
    """
    if is_remote(store):
        return publish_to_bucket(store=str(store), save=save, manifest=manifest)
    store = Path(store)
    store.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(), dir=store))
    try:
        manifest = {**manifest, **(save(tmp) or {})}
        files = file_digests(tmp)
        for name in files:
            fsync_path(tmp / name)
        for _ in range(100):
            number = next_number(store)
            full = {
                **manifest,
                "version": number,
                "files": files,
                "libraries": library_versions(),
                "created_at": datetime.now(UTC).isoformat(),
            }
            with (tmp / "manifest.json").open("w") as fh:
                json.dump(full, fh, indent=2, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            fsync_path(tmp)
            try:
                # rename onto a missing name is atomic; a non-empty target raises, so two
                # writers racing for the same number cannot clobber each other.
                os.rename(tmp, store / str(number))
            except OSError:
                continue
            fsync_path(store)
            return number, store / str(number)
        raise RuntimeError(f"could not find a free version number in {store}")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def publish_to_bucket(*, store: str, save: Callable[[Path], dict | None], manifest: dict) -> tuple[int, str]:
    """publish_checkpoint for an object store: write in the node's cache, upload, commit the manifest last.

    The finished folder then becomes this node's cached copy, so the gate loads it without a download."""
    from flask import current_app

    from app.versions.store import publish_remote

    cache = Path(current_app.config["MODEL_CACHE"])
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(), dir=cache))
    try:
        manifest = {**manifest, **(save(tmp) or {})}
        manifest |= {"files": file_digests(tmp), "libraries": library_versions(),
                     "created_at": datetime.now(UTC).isoformat()}
        number, location = publish_remote(store=store, folder=tmp, manifest=manifest)
        from app.versions.store import cache_lock

        with cache_lock(cache, number):
            # A folder already under this number is another bucket's or a dead upload's: this one replaces it.
            shutil.rmtree(cache / str(number), ignore_errors=True)
            os.rename(tmp, cache / str(number))
        return number, location
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def import_model(*, source: str, store: str | Path, prompt_template: str = "{input}",
                 prompt_format: str = "auto") -> tuple[int, Path]:
    """Copy any local folder or hub id into the store as a new version (the real from_pretrained path).

    prompt_format "auto" records "chat" where the tokenizer has a chat template, else "template"; "chat" or
    "template" forces one (a ValueError if "chat" has no template to render with)."""
    from app.lm.checkpoint import end_of_turn, load_checkpoint
    from app.lm.checkpoint import prompt_format as resolve_format

    loaded = load_checkpoint(source, device="cpu")
    tokenizer = loaded.tokenizer
    chosen = resolve_format({} if prompt_format == "auto" else {"prompt_format": prompt_format}, tokenizer)
    recorded = {"prompt_template": loaded.manifest.get("prompt_template", prompt_template), "prompt_format": chosen}
    turn = end_of_turn(tokenizer) if chosen == "chat" else None
    if turn and turn != tokenizer.eos_token:
        # The end token is what ends a sample and closes every training completion (TRL appends it): a chat model
        # whose tokenizer names another one (Gemma's <eos> beside <end_of_turn>) would be trained to run on past
        # its turn. The stored tokenizer ends turns instead; the manifest keeps what it was.
        recorded["eos_token_was"] = tokenizer.eos_token
        tokenizer.eos_token = turn

    def save(tmp: Path) -> dict:
        loaded.model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        return recorded

    manifest = {"kind": "imported", "base_model": source, "parent_version": None,
                "arch": "seq2seq" if loaded.is_seq2seq else "causal"}
    return publish_checkpoint(store=store, save=save, manifest=manifest)
