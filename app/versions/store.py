"""The model store: a local folder (the default) or an S3-compatible bucket, and each node's local cache of it.

A version's registry `path` is where it lives: a folder, or `s3://bucket/prefix/<n>`. Everything that loads a
model asks `local_copy` for a folder; for a bucket that is a verified copy in MODEL_CACHE, downloaded once.

An object store has no atomic rename, so the manifest is the commit marker. A writer uploads the files under
`uploads/<random id>/` first (a name nobody else uses, so a lost race for a number overwrites nothing), then
claims the next number by writing `<n>/manifest.json` only if it does not exist yet (a conditional PUT,
If-None-Match: *), naming the upload and the files' sha256 digests. Uploads no manifest names are swept.

boto3 reads the endpoint, region and credentials from the standard AWS_* variables itself, so they are not in
app/platform/config.py: AWS_ENDPOINT_URL (MinIO, Ceph RGW, R2; unset for AWS), AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
import time
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from app.platform.exceptions import StoreError
from app.tables import ServingState
from app.versions.files import folder_mismatch, mismatch

UPLOADS = "uploads/"
# An upload younger than this may still be in progress when the sweep runs: left alone.
UPLOAD_GRACE = timedelta(hours=6)


def is_remote(location: str | Path) -> bool:
    """Whether a store or version location is an object-store URL."""
    return str(location).startswith("s3://")


class Bucket:
    """One s3://bucket/prefix: list, publish, fetch and sweep versions (a thin layer over boto3)."""

    def __init__(self, url: str) -> None:
        import boto3

        rest = url.removeprefix("s3://")
        self.bucket, _, prefix = rest.partition("/")
        if not self.bucket:
            raise StoreError(f"MODEL_STORE {url!r}: name a bucket, as s3://bucket or s3://bucket/prefix")
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.url = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self.client = boto3.client("s3")

    def numbers(self) -> list[int]:
        """The committed version numbers (folders with a manifest)."""
        found = []
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix,
                                                                          Delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                name = common["Prefix"][len(self.prefix):].strip("/")
                if name.isdigit():
                    found.append(int(name))
        return sorted(found)

    def manifest(self, number: int) -> dict:
        """A committed version's manifest."""
        body = self.client.get_object(Bucket=self.bucket, Key=f"{self.prefix}{number}/manifest.json")["Body"]
        return json.loads(body.read())

    def publish(self, folder: Path, manifest: dict) -> tuple[int, dict]:
        """Upload a finished folder's files, then commit them under the next free number; (number, manifest)."""
        from botocore.exceptions import ClientError

        upload = f"{UPLOADS}{uuid.uuid4().hex}/"
        for name in manifest["files"]:
            self.client.upload_file(str(folder / name), self.bucket, f"{self.prefix}{upload}{name}")
        for _ in range(100):
            number = max(self.numbers(), default=0) + 1
            full = {**manifest, "version": number, "files_prefix": upload}
            try:
                self.client.put_object(Bucket=self.bucket, Key=f"{self.prefix}{number}/manifest.json",
                                       Body=json.dumps(full, indent=2, sort_keys=True).encode(), IfNoneMatch="*")
            except ClientError as exc:
                if exc.response["Error"]["Code"] in ("PreconditionFailed", "ConditionalRequestConflict"):
                    continue  # another writer committed this number first: take the next
                raise
            return number, full
        raise StoreError(f"could not find a free version number in {self.url}")

    def download(self, number: int, dest: Path, *, expected: dict | None = None) -> dict:
        """Download a version into the empty folder `dest`, checking every file against the manifest's digests.

        `expected` (the registry's copy of the files) is checked too: a manifest altered in the bucket after the
        version was registered is refused as well."""
        manifest = self.manifest(number)
        files = manifest["files"]
        if expected is not None and expected != files:
            raise StoreError(f"version {number}: the manifest in {self.url} differs from the registered one")
        for name in files:
            self.client.download_file(self.bucket, f"{self.prefix}{manifest['files_prefix']}{name}", str(dest / name))
        if problem := folder_mismatch(dest, files, digests=True):
            raise StoreError(f"version {number}: {problem}")
        (dest / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
        return manifest

    def check(self, number: int, files: dict) -> None:
        """Cheap check before an activation: the manifest is there and every file has its size (no download)."""
        try:
            manifest = self.manifest(number)
        except Exception as exc:  # noqa: BLE001 - any failure to read it means it cannot be served
            raise StoreError(f"version {number}: no manifest in {self.url} ({exc.__class__.__name__})") from exc

        def size_of(name: str) -> int | None:
            key = f"{self.prefix}{manifest['files_prefix']}{name}"
            try:
                return self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"]
            except Exception:  # noqa: BLE001 - unreadable counts as missing
                return None

        if problem := mismatch(files, size_of=size_of):
            raise StoreError(f"version {number}: {problem} (in {self.url})")

    def sweep(self, *, now: datetime | None = None) -> list[str]:
        """Delete uploads no manifest names (a writer that died before its commit), once past UPLOAD_GRACE."""
        now = now or datetime.now(UTC)
        named = {self.manifest(n).get("files_prefix") for n in self.numbers()}
        stale: dict[str, list[str]] = {}
        fresh: set[str] = set()
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                          Prefix=self.prefix + UPLOADS):
            for obj in page.get("Contents", []):
                upload = obj["Key"][len(self.prefix):].split("/", 2)[:2]
                name = "/".join(upload) + "/"
                if name in named:
                    continue
                if now - obj["LastModified"] < UPLOAD_GRACE:
                    fresh.add(name)
                stale.setdefault(name, []).append(obj["Key"])
        removed = []
        for name, keys in stale.items():
            if name in fresh:
                continue
            for start in range(0, len(keys), 1000):
                self.client.delete_objects(Bucket=self.bucket,
                                           Delete={"Objects": [{"Key": k} for k in keys[start:start + 1000]]})
            removed.append(name)
        return removed


def split_location(location: str) -> tuple[Bucket, int]:
    """s3://bucket/prefix/<n> -> (the bucket, n)."""
    head, _, number = str(location).rstrip("/").rpartition("/")
    if not number.isdigit():
        raise StoreError(f"{location}: not a version location (s3://bucket/prefix/<n>)")
    return Bucket(head), int(number)


@contextmanager
def cache_lock(cache: Path, number: int):
    """One downloader per version and cache across the node's processes (web workers, prefetcher, worker)."""
    cache.mkdir(parents=True, exist_ok=True)
    with (cache / f".lock-{number}").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def local_copy(location: str | Path, *, files: dict | None = None, keep: set[int] = frozenset()) -> Path:
    """A local folder with the version at `location`: the folder itself, or its verified copy in MODEL_CACHE.

    A version missing from the cache is downloaded into a hidden folder, checked against its digests (and the
    registry's `files`, when given), and only then renamed into place, so a half download is never used. Then
    the least recently used versions beyond MODEL_CACHE_MB are evicted, never one in `keep` (what the caller
    serves) nor the active one."""
    from flask import current_app

    if not is_remote(location):
        return Path(location)
    bucket, number = split_location(str(location))
    cache = Path(current_app.config["MODEL_CACHE"])
    dest = cache / str(number)
    with cache_lock(cache, number):
        if (dest / "manifest.json").is_file() and not cached_matches(dest, files):
            # Another bucket's (or an earlier) version under the same number: fetch this one instead.
            shutil.rmtree(dest, ignore_errors=True)
        if not (dest / "manifest.json").is_file():
            tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=cache))
            try:
                bucket.download(number, tmp, expected=files)
                os.rename(tmp, dest)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
    os.utime(dest)  # its last use, for the LRU
    evict(cache, limit_mb=current_app.config["MODEL_CACHE_MB"], keep=set(keep) | {number})
    return dest


def cached_matches(folder: Path, files: dict | None) -> bool:
    """Whether a cached copy's manifest lists exactly these files (the registry's); without them, any copy does."""
    if files is None:
        return True
    try:
        return json.loads((folder / "manifest.json").read_text()).get("files") == files
    except (OSError, ValueError):
        return False


def folder_bytes(folder: Path) -> int:
    """Bytes of the files in a folder."""
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


# A copy used this recently may be loading in another process of the node (the other web workers, the prefetcher,
# the worker), which `keep` cannot name: it is not evicted, whatever the limit.
RECENT_SECONDS = 600


def evict(cache: Path, *, limit_mb: int, keep: set[int]) -> list[int]:
    """Remove least recently used cached versions while the cache is over its limit; never `keep`, the active one,
    or one used in the last RECENT_SECONDS."""
    keep = set(keep) | {ServingState.active_id()}
    now = time.time()
    stamped = []
    for folder in cache.iterdir():
        try:
            if folder.is_dir() and folder.name.isdigit():
                stamped.append((folder.stat().st_mtime, folder, folder_bytes(folder)))
        except FileNotFoundError:
            continue  # another process of the node evicted it meanwhile
    total = sum(size for _, _, size in stamped)
    removed = []
    for used, folder, size in sorted(stamped):
        if total <= limit_mb * 1024 * 1024:
            break
        if int(folder.name) in keep or now - used < RECENT_SECONDS:
            continue
        with cache_lock(cache, int(folder.name)):
            shutil.rmtree(folder, ignore_errors=True)
        total -= size
        removed.append(int(folder.name))
    return removed


def publish_remote(*, store: str, folder: Path, manifest: dict) -> tuple[int, str]:
    """Commit a finished local folder (files and manifest fields) to the bucket; (number, version location)."""
    number, full = Bucket(store).publish(folder, manifest)
    with (folder / "manifest.json").open("w") as fh:
        json.dump(full, fh, indent=2, sort_keys=True)
    return number, f"{Bucket(store).url}/{number}"

