"""Process helpers for the launcher, the worker and the checkpoint sweep: is a pid alive, die with the parent."""

from __future__ import annotations

import contextlib
import ctypes
import os
from pathlib import Path


def pid_alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, exited but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive
    stat = Path(f"/proc/{pid}/stat")
    return not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def die_with_parent(sig: int) -> None:
    """Ask Linux to send `sig` to this process when its parent exits (a no-op elsewhere)."""
    with contextlib.suppress(AttributeError):
        _LIBC.prctl(1, int(sig), 0, 0, 0)  # 1: PR_SET_PDEATHSIG


# Loaded once, here: die_with_parent runs between fork and exec (and in RQ's forked work-horse), where loading a
# library or importing a module could deadlock on a lock another thread held at the fork.
try:
    _LIBC = ctypes.CDLL(None, use_errno=True)
except OSError:
    _LIBC = None
