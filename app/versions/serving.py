"""Per-process holder of the active model: notice a change, load beside the old one, swap under a lock."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict

from flask import Flask

from app.lm.checkpoint import load_checkpoint
from app.platform.exceptions import BadInput, NoModel
from app.platform.extensions import db
from app.platform.redis_client import ACTIVE_CHANNEL
from app.tables import ModelVersion
from app.versions.buffer import retire_comparisons
from app.versions.registry import active_version_id, check_checkpoint, record_event
from app.versions.store import local_copy

log = logging.getLogger(__name__)
# After a failed load, the next try of that version waits RETRY_FIRST seconds, doubling up to RETRY_MAX: a copy
# that was still being written, or a disk that came back, is picked up without a restart, and a truly broken
# version costs one load attempt per RETRY_MAX rather than one per check.
RETRY_FIRST = 5.0
RETRY_MAX = 300.0


class ModelHolder:
    """The model this process serves. Requests keep the object they got; a swap never blocks them."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._lock = threading.Lock()
        self._loading = threading.Lock()
        self._loaded = None
        self._checked_at = 0.0
        self._wanted: int | None = None
        self.last_error: str | None = None
        self.failed_version: int | None = None
        self._failures = 0  # consecutive failed loads of failed_version
        self._retry_at = 0.0
        self._resident: OrderedDict[int, object] = OrderedDict()  # arena versions besides the served one, LRU
        self._resident_lock = threading.Lock()
        self._resident_loading = threading.Lock()

    def current(self):
        """Return the loaded model, loading the active version first if none is loaded yet."""
        if time.monotonic() - self._checked_at > self.app.config["MODEL_CHECK_SECONDS"]:
            self.refresh(background=self._loaded is not None)
        if self._loaded is None:
            self.refresh(background=False)
        if self._loaded is None:
            raise NoModel(self.last_error or "no model version is active; run `flask starter-model`")
        return self._loaded

    def serving(self):
        """The loaded model right now, without checking for a newer version."""
        return self._loaded

    def refresh(self, *, background: bool) -> None:
        """Check the active pointer (one cheap query) and load it if it changed."""
        self._checked_at = time.monotonic()
        with self.app.app_context():
            wanted = active_version_id()
        self._wanted = wanted
        loaded_id = self._loaded.version_id if self._loaded else None
        if wanted is None or wanted == loaded_id:
            return
        if wanted == self.failed_version and time.monotonic() < self._retry_at:
            return  # backing off: it failed a moment ago
        if background:
            threading.Thread(target=self._load, args=(wanted,), daemon=True, name="model-load").start()
        else:
            self._load(wanted)

    def _load(self, version_id: int) -> None:
        """Load a version fully, then swap it in; a version that fails to load never replaces a working one."""
        if not self._loading.acquire(blocking=self._loaded is None):
            return  # another thread is already loading
        try:
            if self._loaded is not None and self._loaded.version_id == version_id:
                return
            with self.app.app_context():
                try:
                    loaded = self._read(version_id)
                except Exception as exc:  # noqa: BLE001 - any load failure must leave the old model serving
                    self._failed(version_id, exc)
                    return
            with self._lock:
                previous = self._loaded
                self._loaded = loaded
                self.failed_version, self._failures = None, 0
                self.last_error = None
            log.info("serving version %s (was %s)", version_id, previous.version_id if previous else None)
            with self.app.app_context():
                retire_comparisons(keep_version_id=version_id)
        finally:
            self._loading.release()

    def _read(self, version_id: int):
        """The one way a process loads a version: its verified local copy (from a bucket: downloaded to the node's
        cache first, in the loading thread, never on a request's path), every byte checked once, then the model."""
        version = db.session.get(ModelVersion, version_id)
        if version is None:
            raise ValueError(f"version {version_id} is not registered")
        folder = local_copy(version.path, files=version.manifest.get("files"), keep=self.pinned())
        check_checkpoint(version, digests=True, folder=folder)
        return load_checkpoint(folder, version_id=version_id)

    def _failed(self, version_id: int, exc: Exception) -> None:
        """Remember a failed load and when to try again; the audit log gets the first failure of a version."""
        first = version_id != self.failed_version
        self._failures = 1 if first else self._failures + 1
        self.failed_version = version_id
        delay = min(RETRY_FIRST * 2 ** (self._failures - 1), RETRY_MAX)
        self._retry_at = time.monotonic() + delay
        self.last_error = f"version {version_id} failed to load: {exc}"
        log.error("%s (attempt %d; next in %.0f s)", self.last_error, self._failures, delay)
        if first:
            record_event(actor="web", action="load_failed", reason=self.last_error, to_version_id=version_id,
                         from_version_id=self._loaded.version_id if self._loaded else None)

    def resident(self, version_id: int):
        """A loaded version for the arena (or active learning's reference): the served one, else one of at most
        ARENA_RESIDENT_VERSIONS others.

        Each resident version is one more copy of a model in this process: memory grows by one checkpoint per
        version up to the cap, and the least recently used one is dropped beyond it. Loads are serialized: two
        battles asking for the same cold version load it once. The load runs in the request that first needs the
        version (or in the prefetcher, which fills the arena ahead of requests)."""
        served = self.current()
        if served.version_id == version_id:
            return served
        with self._resident_loading:  # one load at a time; the dict's own lock is held only to read or change it
            with self._resident_lock:
                if version_id in self._resident:
                    self._resident.move_to_end(version_id)
                    return self._resident[version_id]
            try:
                loaded = self._read(version_id)
            except Exception as exc:  # noqa: BLE001 - any load failure is the caller's clear error, not a 500
                raise BadInput(f"version {version_id} cannot be loaded for the arena: {exc}", 409) from exc
            with self._resident_lock:
                self._resident[version_id] = loaded
                while len(self._resident) > max(self.app.config["ARENA_RESIDENT_VERSIONS"], 1):
                    self._resident.popitem(last=False)
            return loaded

    def pinned(self) -> set[int]:
        """The versions this process holds: the node's cache must not evict them."""
        with self._resident_lock:
            resident = list(self._resident)
        return {v for v in (self._loaded.version_id if self._loaded else None, *resident) if v is not None}

    def status(self) -> dict:
        """What this process serves and any load error, for the ops page."""
        with self._resident_lock:
            resident = list(self._resident)
        return {
            "serving": self._loaded.version_id if self._loaded else None,
            "wanted": self._wanted,
            "error": self.last_error,
            "resident": resident,
        }


def get_holder(app: Flask) -> ModelHolder:
    """The process-wide holder for this app."""
    holder = app.extensions.get("prefloop_holder")
    if holder is None:
        holder = app.extensions["prefloop_holder"] = ModelHolder(app)
    return holder


def listen_for_changes(app: Flask) -> None:
    """Start a thread that reloads as soon as Redis announces a new active version."""
    url = app.config.get("REDIS_URL")
    if not url:
        return

    def run() -> None:
        import redis

        while True:
            try:
                pubsub = redis.Redis.from_url(url, socket_connect_timeout=2).pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(ACTIVE_CHANNEL)
                for message in pubsub.listen():
                    if message.get("type") == "message":
                        get_holder(app).refresh(background=True)
            except Exception as exc:  # noqa: BLE001 - Redis down: the periodic DB check covers us; retry later
                log.info("active-version listener: %s; retrying", exc)
                time.sleep(2)

    threading.Thread(target=run, daemon=True, name="active-listener").start()
