"""A checkpoint's files against its manifest: sha256 digests, and the one check that the registry, the store's
downloads and its activation check all use."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path


def file_sha256(path: Path) -> str:
    """The sha256 of a file, read in 1 MiB chunks (the publisher records it; `mismatch` compares it)."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_digests(folder: Path) -> dict:
    """name -> {bytes, sha256} for every file of a checkpoint folder but its manifest (what a manifest records)."""
    return {path.name: {"bytes": path.stat().st_size, "sha256": file_sha256(path)}
            for path in sorted(folder.iterdir()) if path.is_file() and path.name != "manifest.json"}


def mismatch(files: dict, *, size_of: Callable[[str], int | None],
             sha256_of: Callable[[str], str] | None = None) -> str | None:
    """The first way the files differ from the manifest's `files` (missing, another size, with sha256_of another
    digest), or None. size_of answers None for a missing file; a local folder or a bucket provides it."""
    for name, info in files.items():
        size = size_of(name)
        if size is None:
            return f"{name} is missing"
        if size != info["bytes"]:
            return f"{name} is {size} bytes, expected {info['bytes']}"
    for name, info in files.items() if sha256_of else ():
        if "sha256" in info and sha256_of(name) != info["sha256"]:
            return f"{name} does not match its sha256 digest in the manifest"
    return None


def folder_mismatch(folder: Path, files: dict, *, digests: bool) -> str | None:
    """`mismatch` for a local folder: sizes always, sha256 digests (every byte read) only with digests."""
    def size_of(name: str) -> int | None:
        path = folder / name
        return path.stat().st_size if path.is_file() else None

    return mismatch(files, size_of=size_of, sha256_of=(lambda name: file_sha256(folder / name)) if digests else None)
