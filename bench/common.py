"""Shared helpers for the benchmarks: cached starter builds, percentiles, markdown tables, JSON output."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def starter_config(arch: str, size: str):
    """The project's StarterConfig for an arch and size ("default" is what users serve, "tiny" is for tests)."""
    from worker.starter import StarterConfig

    return StarterConfig.tiny(arch) if size == "tiny" else StarterConfig(arch=arch)


def cached_starter(arch: str, size: str, *, store: Path | None = None, log=print) -> Path:
    """A starter built by worker/starter.py into STORE/ARCH-SIZE (default bench/out/starters), reused if it matches."""
    from worker.starter import build_starter, matches

    cfg = starter_config(arch, size)
    store = Path(store or OUT / "starters") / f"{arch}-{size}"
    if store.is_dir():
        for folder in sorted((p for p in store.iterdir() if p.name.isdigit()), key=lambda p: -int(p.name)):
            if matches(folder, cfg):
                return folder
    log(f"building the {size} {arch} starter in {store} (once, unless the committed one matches)")
    started = time.perf_counter()
    _, path = build_starter(cfg, store=store, log=lambda *_: None)
    log(f"built {path} in {time.perf_counter() - started:.0f}s")
    return path


def stop_on_sigterm() -> None:
    """Turn SIGTERM into SystemExit, so the servers and workers a benchmark started are stopped by its `with`s."""
    import signal

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) with linear interpolation between closest ranks."""
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    k = (len(ordered) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary_ms(seconds: list[float]) -> dict:
    """Median, p95, min, max and mean of timings given in seconds, in milliseconds."""
    ms = [s * 1000 for s in seconds]
    return {
        "n": len(ms),
        "median_ms": round(statistics.median(ms), 2),
        "p95_ms": round(percentile(ms, 95), 2),
        "min_ms": round(min(ms), 2),
        "max_ms": round(max(ms), 2),
        "mean_ms": round(statistics.fmean(ms), 2),
    }


def mean_range(values: list[float], pct: bool = False) -> str:
    """"mean (min-max)" of repeated measurements, or the value alone when there is one."""
    def f(v: float) -> str:
        return f"{v:.0%}" if pct else f"{v:.0f}" if abs(v) >= 10 else f"{v:.2f}"

    mean = statistics.fmean(values)
    return f"{f(mean)} ({f(min(values))}-{f(max(values))})" if len(values) > 1 else f(mean)


def markdown_table(headers: list[str], rows: list[list]) -> str:
    """A GitHub-flavoured markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def machine() -> dict:
    """What the numbers were measured on."""
    import torch

    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "load_avg_when_written": [round(x, 2) for x in os.getloadavg()],
    }


def write_json(path: Path, data: dict) -> None:
    """Write pretty JSON, creating bench/out/ if needed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def scratch_database(server_url: str, name: str) -> str:
    """Create (or recreate, empty) a database of our own on the server `server_url` names; return its URL.

    A benchmark must not need a database made by hand, nor wipe one a test suite or a person is using."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return sqlalchemy.engine.make_url(server_url).set(database=name).render_as_string(hide_password=False)


class LoadSampler:
    """The machine's load while a measurement runs: the 1-minute load average and the busy share of all CPUs
    (from /proc/stat), sampled every second, so a figure can be told apart from a busy machine's."""

    def __init__(self) -> None:
        import threading

        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _cpu() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields) - idle, sum(fields)

    def _run(self) -> None:

        busy0, total0 = self._cpu()
        while not self._stop.wait(1.0):
            busy, total = self._cpu()
            self.samples.append((os.getloadavg()[0], (busy - busy0) / max(total - total0, 1)))
            busy0, total0 = busy, total

    def __enter__(self) -> LoadSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def summary(self) -> dict:
        """Mean and max of the load average and of the CPU busy share over the run."""
        if not self.samples:
            return {}
        loads, busy = [s[0] for s in self.samples], [s[1] for s in self.samples]
        return {"loadavg_mean": round(statistics.fmean(loads), 2), "loadavg_max": round(max(loads), 2),
                "cpu_busy_mean": round(statistics.fmean(busy), 2), "cpu_busy_max": round(max(busy), 2)}
