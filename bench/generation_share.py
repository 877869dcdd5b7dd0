"""A fair share of sampling: one greedy annotator (create-then-skip, no pause) beside people who read, per limit.

    PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python bench/generation_share.py [--seconds 30] [--reps 3]

For each GENERATION_LIMIT setting (off, and the default) a real gunicorn (2 workers, the prefetcher, SQLite, the
default starter) serves one greedy annotator, who asks for the next comparison and skips it as fast as the server
answers (the audit's loop), and `--readers` annotators who click the first candidate after a `--think-ms` pause.
Reported per setting, as the mean and range over `--reps` runs: the comparisons the greedy one got a second and
their share of all comparisons handed out, and the readers' create latency (p50 / p95). Writes
bench/out/generation-share.json.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

from bench.click_latency import Client
from bench.common import OUT, cached_starter, machine, markdown_table, mean_range, percentile, write_json
from harness.live import live_server

SETTINGS = {"off": "100000 per minute", "default": None}  # None: the app's own default


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=30)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--readers", type=int, default=5)
    p.add_argument("--think-ms", type=float, default=3000, help="a reader's pause before each click")
    p.add_argument("--out", type=Path, default=OUT / "generation-share.json")
    return p.parse_args()


def greedy(client: Client, until: float, out: dict) -> None:
    """Create, skip, repeat, as fast as the server answers; on a 429, ask again at once (the worst case)."""
    while time.monotonic() < until:
        status, body, _ = client.request("POST", "/api/comparisons", {})
        out[status] = out.get(status, 0) + 1
        if status == 201:
            client.request("POST", f"/api/comparisons/{body['id']}/answer", {"verdict": "skip"})


def reader(client: Client, until: float, think_s: float, out: list) -> None:
    """Create, read for think_s, click the first candidate; record each create's latency."""
    while time.monotonic() < until:
        status, body, seconds = client.request("POST", "/api/comparisons", {})
        if status != 201:
            out.append(("error", status))
            time.sleep(1)
            continue
        out.append(("create", seconds))
        time.sleep(think_s)
        client.request("POST", f"/api/comparisons/{body['id']}/answer", {"candidate_id": body["candidates"][0]["id"]})


def one_run(args: argparse.Namespace, starter: Path, limit: str | None, tmp: Path) -> dict:
    """One server, one greedy annotator and the readers, for args.seconds."""
    users = {"greedy": "annotator"} | {f"r{i}": "annotator" for i in range(args.readers)}
    env = {"GEN_MAX_NEW_TOKENS": None, "GENERATION_LIMIT": limit}  # None: unset, the app's defaults
    with live_server(tmp_path=tmp, starter_path=starter, env_extra=env, workers=2, users=users, prompts=500) as srv:
        until = time.monotonic() + args.seconds
        got: dict = {}
        seen: dict[str, list] = {f"r{i}": [] for i in range(args.readers)}
        threads = [threading.Thread(target=greedy, args=(Client(srv.base_url, srv.users["greedy"]["token"]), until,
                                                         got))]
        threads += [threading.Thread(target=reader, args=(Client(srv.base_url, srv.users[name]["token"]), until,
                                                          args.think_ms / 1000, out))
                    for name, out in seen.items()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    creates = [s for out in seen.values() for kind, s in out if kind == "create"]
    errors = sum(1 for out in seen.values() for kind, _ in out if kind == "error")
    greedy_n = got.get(201, 0)
    return {"greedy_per_s": greedy_n / args.seconds, "greedy_429": got.get(429, 0),
            "greedy_share": greedy_n / max(1, greedy_n + len(creates)), "reader_creates": len(creates),
            "reader_errors": errors, "reader_p50_ms": 1000 * statistics.median(creates),
            "reader_p95_ms": 1000 * percentile(creates, 95)}


def main() -> None:
    """Every setting, args.reps times, interleaved (off, default, off, default, ...)."""
    args = parse_args()
    starter = cached_starter("gpt2", "default")
    runs: dict[str, list[dict]] = {name: [] for name in SETTINGS}
    with tempfile.TemporaryDirectory(prefix="bench-share-") as tmp:
        for rep in range(args.reps):
            for name, limit in SETTINGS.items():
                run = one_run(args, starter, limit, Path(tmp) / f"{name}-{rep}")
                runs[name].append(run)
                print(name, rep, {k: round(v, 3) if isinstance(v, float) else v for k, v in run.items()}, flush=True)
    rows = []
    for name, rs in runs.items():
        rows.append([name, SETTINGS[name] or "60 per minute (the default)",
                     mean_range([r["greedy_per_s"] for r in rs]), mean_range([r["greedy_share"] for r in rs], pct=True),
                     mean_range([float(r["reader_creates"]) for r in rs]),
                     mean_range([r["reader_p50_ms"] for r in rs]), mean_range([r["reader_p95_ms"] for r in rs]),
                     sum(r["reader_errors"] for r in rs)])
    table = markdown_table(["setting", "GENERATION_LIMIT", "greedy comparisons/s", "greedy share of all handed out",
                            "readers' comparisons", "reader create p50 ms", "reader create p95 ms", "reader errors"],
                           rows)
    print(table)
    write_json(args.out, {"benchmark": "generation share: one greedy annotator beside readers", "machine": machine(),
                          "settings": vars(args) | {"out": str(args.out)}, "runs": runs, "table": table})


if __name__ == "__main__":
    main()
