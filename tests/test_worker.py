"""The real loop: gunicorn, a real `python -m worker` process and real Redis train the starters end to end."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import redis
import torch
from safetensors.torch import load_file

from harness.live import call, live_server, live_worker, wait_serving, worker_pids
from tests import services
from tests.test_dpo import TINY_SFT_WEIGHT

pytestmark = [pytest.mark.slow, pytest.mark.redis]
USERS = {"ann": "annotator", "adm": "admin", "opr": "operator"}


def click_shortest(srv, *, n: int) -> None:
    """n pool comparisons, each answered with its shortest candidate (a judge the starter can learn)."""
    for _ in range(n):
        status, comp = call(srv, "POST", "/api/comparisons", "ann", {})
        assert status == 201, comp
        best = min(comp["candidates"], key=lambda c: (len(c["text"]), c["id"]))
        status, body = call(srv, "POST", f"/api/comparisons/{comp['id']}/answer", "ann", {"candidate_id": best["id"]})
        assert status == 201, body


def wait_run(srv, run_id: str, *, until, timeout: float = 420) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, run = call(srv, "GET", f"/api/training-runs/{run_id}", "adm")
        assert status == 200, run
        if until(run):
            return run
        time.sleep(0.5)
    raise AssertionError(f"run {run_id} never reached the state: {run}\n{srv.log_path.with_name('worker.log')}")


def finished(run: dict) -> bool:
    return run["status"] not in ("queued", "running")


@pytest.fixture
def redis_env():
    url = services.redis_url()
    redis.Redis.from_url(url).flushdb()
    yield {"REDIS_URL": url, "GEN_MAX_NEW_TOKENS": "40", "TRAIN_MIN_PAIRS": "4",
           "TRAIN_SFT_WEIGHT": str(TINY_SFT_WEIGHT)}
    redis.Redis.from_url(url).flushdb()


@pytest.mark.parametrize("arch", ["gpt2", "t5"])
def test_retrain_clicked_trains_registers_and_serves(tmp_path, starter_dir, redis_env, arch):
    """Clicks -> POST /api/training-runs -> the worker trains -> a new version whose weights moved and whose
    held-out accuracy beats its parent's; if the gate passes it, the web processes serve it."""
    with live_server(tmp_path=tmp_path, starter_path=starter_dir[arch], users=USERS, prompts=20,
                     env_extra=redis_env) as srv, live_worker(srv):
        click_shortest(srv, n=60)
        # 4 epochs: the tiny test starters need more passes than the defaults give the default-size ones.
        status, run = call(srv, "POST", "/api/training-runs", "adm", {"epochs": 4})
        assert status == 202 and run["status"] == "queued" and run["config"]["epochs"] == 4, run
        run = wait_run(srv, run["id"], until=finished)
        assert run["status"] in ("succeeded", "rejected"), run["error"]
        m = run["metrics"]
        assert m["accuracy_candidate"] > m["accuracy_parent"], m
        assert run["progress"]["step"] == run["progress"]["total_steps"] > 0
        version = run["version_id"]
        before = load_file(str(srv.model_store / "1" / "model.safetensors"))
        after = load_file(str(srv.model_store / str(version) / "model.safetensors"))
        assert sum(not torch.equal(before[k], after[k]) for k in before) > len(before) // 2

        versions = {v["id"]: v for v in call(srv, "GET", "/api/model-versions", "adm")[1]["versions"]}
        assert versions[version]["parent_id"] == 1 and versions[version]["run_id"] == run["id"]
        if run["status"] == "succeeded":
            assert versions[version]["active"] and m["activated"]
            wait_serving(srv, version, pids=worker_pids(srv))
        else:
            assert versions[1]["active"] and versions[version]["status"] == "rejected"


def test_kill_9_mid_training_fails_the_run_and_loses_nothing(tmp_path, starter_dir, redis_env):
    """kill -9 of the worker while it trains: the run ends failed (startup sweep), the active version and the
    registry are unchanged, no half-written version appears, and a new Retrain works."""
    with live_server(tmp_path=tmp_path, starter_path=starter_dir["gpt2"], users=USERS, prompts=20,
                     env_extra=redis_env) as srv:
        click_shortest(srv, n=24)
        with live_worker(srv) as worker:
            status, run = call(srv, "POST", "/api/training-runs", "adm", {"epochs": 50})
            assert status == 202
            wait_run(srv, run["id"], until=lambda r: r["status"] == "running" and (r["progress"] or {}).get("step"))
            os.killpg(worker.pid, signal.SIGKILL)  # the worker and its forked work-horse, mid-step
            worker.wait(timeout=30)
        assert call(srv, "GET", f"/api/training-runs/{run['id']}", "adm")[1]["status"] == "running"

        with live_worker(srv):  # a fresh worker sweeps what the dead one left
            dead = wait_run(srv, run["id"], until=finished, timeout=60)
            assert dead["status"] == "failed" and "worker stopped" in dead["error"]
            versions = call(srv, "GET", "/api/model-versions", "adm")[1]["versions"]
            assert [(v["id"], v["active"]) for v in versions] == [(1, True)]
            assert sorted(p.name for p in Path(srv.model_store).iterdir() if not p.name.startswith(".")) == ["1"]

            status, again = call(srv, "POST", "/api/training-runs", "adm", {})
            assert status == 202 and again["id"] != run["id"]
            again = wait_run(srv, again["id"], until=finished)
            assert again["status"] in ("succeeded", "rejected") and again["version_id"] == 2, again["error"]
