"""A request alone: its latency when it samples in its web process (SAMPLE_REQUESTS_IN=web) against when it is
handed to the prefetcher (prefetcher), with the prefetcher idle and with a refill under way.

    PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python bench/handoff.py [--requests 30] [--out FILE]

Two real gunicorn servers (2 workers and a prefetcher each, the served defaults, one embedded Redis) run at once,
one per setting; one annotator alternates between them, one request at a time, so they never sample at the same
moment. Each round: a typed prompt (it always samples: typed prompts are never prefetched) with the prefetcher
idle; then 16 pool comparisons claimed and skipped quickly (the buffer drops to its low-water mark and the
prefetcher starts a refill of 16) and at once another typed prompt, which arrives while the refill samples.
"Issue 28: with one request alone, the latency must not be worse than today." Writes bench/out/handoff.json.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from bench.common import OUT, cached_starter, machine, markdown_table, stop_on_sigterm, summary_ms, write_json
from bench.retrain import redis_server
from harness.live import call, live_server, wait_for_buffer

PLACES = ("web", "prefetcher")


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--requests", type=int, default=30, help="rounds: typed prompts per setting and condition")
    p.add_argument("--out", type=Path, default=OUT / "handoff.json")
    return p.parse_args()


def typed(srv, text: str) -> tuple[float, dict]:
    """One typed prompt, answered with a skip so the next may come; (seconds for the comparison, its body)."""
    started = time.perf_counter()
    status, body = call(srv, "POST", "/api/comparisons", "ann", {"prompt": text}, timeout=120)
    seconds = time.perf_counter() - started
    assert status == 201, body
    assert call(srv, "POST", f"/api/comparisons/{body['id']}/answer", "ann", {"verdict": "skip"})[0] == 201
    return seconds, body


def drain(srv, n: int) -> None:
    """Claim and skip n pool comparisons (from the buffer), as fast as one client can."""
    for _ in range(n):
        status, body = call(srv, "POST", "/api/comparisons", "ann", {}, timeout=120)
        assert status == 201, body
        call(srv, "POST", f"/api/comparisons/{body['id']}/answer", "ann", {"verdict": "skip"})


def main() -> None:
    args = parse_args()
    stop_on_sigterm()
    starter = cached_starter("gpt2", "default")
    times = {(place, when): [] for place in PLACES for when in ("idle", "refill")}
    with tempfile.TemporaryDirectory(prefix="bench-handoff-") as tmp, redis_server(None, Path(tmp)) as url, \
            ExitStack() as stack:
        servers = {place: stack.enter_context(live_server(
            tmp_path=Path(tmp) / place, starter_path=starter, workers=2, prompts=500, start_timeout=300,
            env_extra={"REDIS_URL": url, "SAMPLE_REQUESTS_IN": place, "GENERATION_LIMIT": "100000 per minute",
                       "TYPED_PROMPT_LIMIT": "100000 per minute"})) for place in PLACES}
        for srv in servers.values():
            wait_for_buffer(srv.db_url, 32, timeout=300)
        for i in range(args.requests):
            for place, srv in servers.items():
                # The prefetcher idle again: above its low-water mark (16 of 32) it starts no refill. (Not "full":
                # a request batch filled up with pool prompts leaves the buffer at 31, and nothing tops that up.)
                wait_for_buffer(srv.db_url, 17, timeout=300)
                time.sleep(0.5)
                times[(place, "idle")].append(typed(srv, f"can you send me the report {i} by noon")[0])
                drain(srv, 16)
                times[(place, "refill")].append(typed(srv, f"where did you put my keys {i}")[0])
    report = {"machine": machine(), "args": {k: str(v) for k, v in vars(args).items()},
              "results": {f"{p} {w}": summary_ms(t) for (p, w), t in times.items()}}
    write_json(args.out, report)
    print(markdown_table(["setting", "prefetcher", "n", "median ms", "p95 ms", "max ms"],
                         [[p, w, s["n"], s["median_ms"], s["p95_ms"], s["max_ms"]]
                          for (p, w), s in ((key, summary_ms(t)) for key, t in times.items())]))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
