"""Click-to-stored latency: POST /api/comparisons/<id>/answer sent -> 201 received (the row is committed first).

    PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python bench/click_latency.py [--clicks 200] [--backends sqlite,postgres]

Runs a real gunicorn (2 workers) through harness.live.live_server on SQLite (WAL) and, if reachable, on the scratch
Postgres database (its public schema is dropped and recreated). Both servers run at once and one annotator
alternates clicks between them: POST /api/comparisons {} (next pool prompt, from the prefetch buffer when it has
one), then POST the answer picking the first candidate, then GET /api/progress (a read-only baseline). The answer
request is the headline; the other two are timed for context. Afterwards the acknowledged 201s are checked against
the rows in the preferences table. Prints a markdown table and writes bench/out/click.json.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from bench.common import OUT, cached_starter, machine, markdown_table, scratch_database, summary_ms, write_json
from harness.live import wait_for_buffer
from harness.servers import reset_postgres

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test_c"


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clicks", type=int, default=200, help="timed clicks per backend")
    p.add_argument("--warmup", type=int, default=10, help="untimed clicks first")
    p.add_argument("--backends", default="sqlite,postgres",
                   help="comma-separated: sqlite, postgres; a ':sync' suffix serves with gunicorn's sync worker "
                        "(the web server before issue 30) instead of app/platform/httpworker.py, to compare in one run")
    p.add_argument("--postgres-url", default=PG_URL,
                   help="a SCRATCH database: its public schema is wiped (postgres:sync uses <name>_sync beside it)")
    p.add_argument("--arch", choices=["gpt2", "t5"], default="gpt2")
    p.add_argument("--size", choices=["default", "tiny"], default="default", help="starter size (default: served)")
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    p.add_argument("--prefetch", type=int, default=32, help="PREFETCH_SIZE (the app's default is 32)")
    p.add_argument("--think-ms", type=float, default=0.0, help="pause after each round (one click per backend)")
    p.add_argument("--store", type=Path, default=None, help="where starters are built/cached (bench/out/starters)")
    p.add_argument("--out", type=Path, default=OUT / "click.json")
    return p.parse_args()


class Client:
    """A keep-alive JSON client with a bearer token (it reconnects when the server closes the connection)."""

    def __init__(self, base_url: str, token: str) -> None:
        parts = urlsplit(base_url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict, float]:
        """Send one request; return (status, decoded JSON body, seconds from sending to the whole response read)."""
        data = None if body is None else json.dumps(body).encode()
        started = time.perf_counter()
        try:
            self.conn.request(method, path, body=data, headers=self.headers)
            res = self.conn.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # The server closed a kept-alive connection that sat idle past its keepalive timeout (2 s) before this
            # request reached it, as browsers also see; they send it again on a new connection, and so does this.
            self.conn.close()
            started = time.perf_counter()
            self.conn.request(method, path, body=data, headers=self.headers)
            res = self.conn.getresponse()
        raw = res.read()
        elapsed = time.perf_counter() - started
        return res.status, json.loads(raw or b"{}"), elapsed

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


def postgres_reachable(url: str) -> str | None:
    """None if the database answers, else why not."""
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("select 1"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure means "skip this backend"
        return str(exc).splitlines()[0]
    return None


def one_click(client: Client) -> dict:
    """Create a comparison, answer it with its first candidate, then read the progress (a no-write baseline)."""
    status, comparison, create_s = client.request("POST", "/api/comparisons", {})
    if status != 201:
        raise RuntimeError(f"POST /api/comparisons -> {status}: {comparison}")
    answer = {"candidate_id": comparison["candidates"][0]["id"]}
    status, body, answer_s = client.request("POST", f"/api/comparisons/{comparison['id']}/answer", answer)
    if status != 201:
        print(f"answer -> {status}: {body}", flush=True)
    progress_status, progress, progress_s = client.request("GET", "/api/progress")
    if progress_status != 200:
        raise RuntimeError(f"GET /api/progress -> {progress_status}: {progress}")
    return {"comparison_id": comparison["id"], "create_s": create_s, "answer_s": answer_s, "status": status,
            "preference_id": body.get("id"), "progress_s": progress_s}


def verify(db_url: str, records: list[dict]) -> dict:
    """Compare acknowledged 201s with the preferences table, and find which comparisons came from the buffer."""
    import sqlalchemy

    engine = sqlalchemy.create_engine(db_url)
    with engine.connect() as conn:
        stored = {row[0] for row in conn.execute(sqlalchemy.text("select id from preferences"))}
        # A prefetched comparison was created (state ready) before it was claimed; an inline one is assigned
        # while it is built, i.e. before its row is inserted.
        prefetched = {row[0] for row in conn.execute(
            sqlalchemy.text("select id from comparisons where assigned_at > created_at"))}
    engine.dispose()
    acked = {r["preference_id"] for r in records if r["status"] == 201}
    return {"acknowledged_201": sum(r["status"] == 201 for r in records), "rows_in_preferences": len(stored),
            "every_acked_id_stored": acked <= stored, "match": acked == stored and len(acked) == len(records),
            "prefetched_ids": prefetched}


def serve(stack: contextlib.ExitStack, backend: str, args: argparse.Namespace, starter: Path, tmp: Path):
    """Start gunicorn on a fresh database of this backend; it stops when the stack closes."""
    from harness.live import live_server

    env_extra = {"GEN_MAX_NEW_TOKENS": 40, "PREFETCH_SIZE": args.prefetch, "TORCH_THREADS": 1}
    database, _, worker = backend.partition(":")
    if database == "postgres":
        url = postgres_url(args.postgres_url, worker)
        reset_postgres(url)
        env_extra["DATABASE_URL"] = url
    gunicorn_args = ("--worker-class", "sync", "--threads", "1") if worker == "sync" else ()
    (tmp / backend.replace(":", "-")).mkdir()
    return stack.enter_context(live_server(tmp_path=tmp / backend.replace(":", "-"), starter_path=starter,
                                           env_extra=env_extra, workers=args.workers, users={"bench": "annotator"},
                                           prompts=200, gunicorn_args=gunicorn_args))


def postgres_url(url: str, worker: str) -> str:
    """The scratch database of a postgres backend: the given one, or for postgres:sync one of its own beside it."""
    if not worker:
        return url
    import sqlalchemy

    return scratch_database(url, f"{sqlalchemy.make_url(url).database}_{worker}")


def run_interleaved(backends: list[str], args: argparse.Namespace, starter: Path) -> list[dict]:
    """Serve every backend at once and alternate single clicks between them (order swapped each round)."""
    records: dict[str, list[dict]] = {b: [] for b in backends}
    with tempfile.TemporaryDirectory(prefix="bench-click-") as tmp:
        with contextlib.ExitStack() as stack:
            srvs = {b: serve(stack, b, args, starter, Path(tmp)) for b in backends}
            clients = {b: Client(srv.base_url, srv.users["bench"]["token"]) for b, srv in srvs.items()}
            warm = {b: [one_click(clients[b]) for _ in range(args.warmup)] for b in backends}
            for b in backends:
                buffered = wait_for_buffer(srvs[b].db_url, args.prefetch) if args.prefetch else 0
                print(f"{b}: {buffered} comparisons buffered", flush=True)
            print(f"timing {args.clicks} clicks per backend, alternating {' / '.join(backends)}...", flush=True)
            for i in range(args.clicks):
                for b in backends if i % 2 == 0 else list(reversed(backends)):
                    records[b].append(one_click(clients[b]))
                if args.think_ms:
                    time.sleep(args.think_ms / 1000)
            for client in clients.values():
                client.close()
        # gunicorn has stopped, so nothing is in flight; the warm-up clicks are stored too, so they count.
        return [summarise(b, records[b], verify(srvs[b].db_url, warm[b] + records[b])) for b in backends]


def summarise(backend: str, records: list[dict], check: dict) -> dict:
    """Latency summaries for one backend, with comparison requests split by where the comparison came from."""
    from_buffer = [r for r in records if r["comparison_id"] in check["prefetched_ids"]]
    inline = [r for r in records if r["comparison_id"] not in check["prefetched_ids"]]
    return {
        "backend": backend,
        "clicks": len(records),
        "answer": summary_ms([r["answer_s"] for r in records]),
        "progress_get": summary_ms([r["progress_s"] for r in records]),
        "create_all": summary_ms([r["create_s"] for r in records]),
        "create_from_buffer": summary_ms([r["create_s"] for r in from_buffer]) if from_buffer else None,
        "create_inline": summary_ms([r["create_s"] for r in inline]) if inline else None,
        "verify": {k: v for k, v in check.items() if k != "prefetched_ids"},
    }


def fmt(stats: dict | None, key: str) -> str:
    """A cell for a summary value, or '-' when there was nothing to summarise."""
    return "-" if stats is None else f"{stats[key]:.1f}"


def table(results: list[dict]) -> str:
    """One markdown row per backend."""
    rows = []
    for r in results:
        a, v = r["answer"], r["verify"]
        buf, inl = r["create_from_buffer"], r["create_inline"]
        rows.append([r["backend"], r["clicks"], fmt(a, "median_ms"), fmt(a, "p95_ms"), fmt(a, "max_ms"),
                     fmt(r["progress_get"], "median_ms"),
                     f"{fmt(buf, 'median_ms')} ({buf['n'] if buf else 0})",
                     f"{fmt(inl, 'median_ms')} ({inl['n'] if inl else 0})",
                     f"{v['acknowledged_201']} / {v['rows_in_preferences']} {'ok' if v['match'] else 'MISMATCH'}"])
    headers = ["backend", "clicks", "answer median ms", "answer p95 ms", "answer max ms", "GET progress median ms",
               "create median ms, from buffer (n)", "create median ms, generated inline (n)",
               "201s / rows stored"]
    return markdown_table(headers, rows)


def answer_ratios(results: list[dict]) -> dict:
    """Each later backend's answer median over the first backend's (same run, interleaved)."""
    first = results[0]["answer"]["median_ms"]
    return {r["backend"]: round(r["answer"]["median_ms"] / first, 2) for r in results[1:]}


def main() -> None:
    """Run the click loop on each reachable backend and report."""
    args = parse_args()
    starter = cached_starter(args.arch, args.size, store=args.store)
    backends, skipped = [], {}
    for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
        if backend.startswith("postgres") and (why := postgres_reachable(args.postgres_url)):
            print(f"postgres: skipped ({why})")
            skipped[backend] = why
        else:
            backends.append(backend)
    results = run_interleaved(backends, args, starter)
    print()
    print(table(results))
    ratios = answer_ratios(results)
    for backend, ratio in ratios.items():
        print(f"answer median, {backend} / {results[0]['backend']}: {ratio:.2f}x")
    write_json(args.out, {
        "benchmark": "click-to-stored: POST answer sent -> 201 received, gunicorn, bearer token",
        "machine": machine(),
        "settings": {"workers": args.workers, "prefetch_size": args.prefetch, "max_new_tokens": 40,
                     "think_ms": args.think_ms, "warmup": args.warmup, "arch": args.arch, "size": args.size,
                     "starter": str(starter)},
        "results": results,
        "answer_median_ratio_to_first": ratios,
        "skipped": skipped,
        "table": table(results),
    })
    print(f"\nwrote {args.out}")
    if not all(r["verify"]["match"] for r in results):
        raise SystemExit("acknowledged 201s and stored rows differ")


if __name__ == "__main__":
    main()
