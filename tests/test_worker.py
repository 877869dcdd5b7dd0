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
    # 90 clicks on 30 prompts: the held-out fifth of the inputs gives ~36 pairs; with 60 clicks on 20 (~24 pairs)
    # a tiny T5 run once measured 0.417 against its parent's 0.5 on a draw of fresh random samples.
    with live_server(tmp_path=tmp_path, starter_path=starter_dir[arch], users=USERS, prompts=30,
                     env_extra=redis_env) as srv, live_worker(srv):
        click_shortest(srv, n=90)
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


def test_a_chat_model_is_imported_sampled_trained_gated_and_served(tmp_path, starter_dir, chat_dir, redis_env):
    """A checkpoint with a chat template, through the real loop: `flask models import`, activated, sampled with the
    task's system prompt, clicked, trained one round by the worker, gated, and served; its comparisons store the
    chat-rendered prompt, and its child is prompted the same way."""
    import json

    system = "Answer politely."
    chat_prompt = ("<|im_start|>system\n" + system
                   + "<|im_end|>\n<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n")
    # The gate's thresholds on samples are off: this test is about the chat path through training and serving, and
    # a rejected child cannot be served (only ready versions are); a tiny chat model's samples failed them now and then.
    lenient = {"GATE_MIN_DISTINCT": "0", "GATE_MAX_DISTINCT_DROP_SE": "1000", "GATE_MAX_FLUENCY_DROP": "1000",
               "GATE_MAX_LENGTH_RATIO": "1000"}
    with live_server(tmp_path=tmp_path, starter_path=starter_dir["gpt2"], users=USERS, prompts=20,
                     env_extra=redis_env | lenient) as srv, live_worker(srv):
        assert "as version 2" in srv.flask("models", "import", str(chat_dir))
        status, task = call(srv, "PUT", "/api/task", "adm", {"question": "Which answer is best?",
                                                               "guidelines": "Pick the *politest*.",
                                                               "system_prompt": system})
        assert status == 200 and task["revision"] == 2
        status, _ = call(srv, "POST", "/api/model-versions/2/activate", "opr", {"reason": "our chat model"})
        assert status == 200
        pids = worker_pids(srv)
        wait_serving(srv, 2, pids=pids)
        versions = {v["id"]: v for v in call(srv, "GET", "/api/model-versions", "adm")[1]["versions"]}
        assert versions[1]["prompt_format"] == "template" and versions[2]["prompt_format"] == "chat"

        click_shortest(srv, n=40)
        out = tmp_path / "clicks.jsonl"
        srv.flask("preferences", "export", str(out))
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert rows and all(r["model_version_id"] == 2 and r["task_revision"] == 2 for r in rows)
        assert all(r["prompt"] == chat_prompt.format(r["input"]) for r in rows)
        assert not any(r["chosen"].startswith(" ") for r in rows)  # the cue ends in a newline: no space after it

        status, run = call(srv, "POST", "/api/training-runs", "adm", {"epochs": 4})
        assert status == 202 and run["config"]["system_prompt"] == system
        run = wait_run(srv, run["id"], until=finished)
        assert run["status"] == "succeeded", run
        assert run["metrics"]["fluency_candidate"] is not None  # the gate sampled the chat model
        child = run["version_id"]
        versions = {v["id"]: v for v in call(srv, "GET", "/api/model-versions", "adm")[1]["versions"]}
        assert versions[child]["parent_id"] == 2 and versions[child]["prompt_format"] == "chat"
        wait_serving(srv, child, pids=pids)
        status, comp = call(srv, "POST", "/api/comparisons", "ann", {"prompt": "Send me the file."})
        assert status == 201 and comp["task_revision"] == 2
        call(srv, "POST", f"/api/comparisons/{comp['id']}/answer", "ann", {"candidate_id": comp["candidates"][0]["id"]})
        srv.flask("preferences", "export", str(out))
        newest = [json.loads(line) for line in out.read_text().splitlines()][-1]
        assert newest["model_version_id"] == child and newest["prompt"] == chat_prompt.format("Send me the file.")


def test_the_worker_runs_only_our_job_functions(tmp_path):
    """A JSON job naming any other function (or a callback) fails without importing or running it; ours resolves.
    (A job "platform.node" queued on the training queue ran before.)"""
    from rq import Queue

    from app.training.jobs import JOB_FUNCTION, QUEUE, SERIALIZER
    from worker.__main__ import AllowedJob, JobNotAllowed, TrainingWorker, build_worker

    conn = redis.Redis.from_url(services.redis_url())
    conn.flushdb()
    try:
        queue = Queue(QUEUE, connection=conn, serializer=SERIALIZER)
        target = tmp_path / "made-by-a-stranger"
        evil = queue.enqueue("os.mkdir", str(target))
        job = AllowedJob.fetch(evil.id, connection=conn, serializer=SERIALIZER)
        with pytest.raises(JobNotAllowed, match="'os.mkdir'"):
            job.perform()
        assert not target.exists()
        ours = AllowedJob.fetch(queue.enqueue(JOB_FUNCTION, "no-such-run").id, connection=conn, serializer=SERIALIZER)
        assert ours.func.__name__ == "run_dpo"
        sneaky = queue.enqueue(JOB_FUNCTION, "x", on_success="os.getcwd")
        with pytest.raises(JobNotAllowed, match="callback"):
            _ = AllowedJob.fetch(sneaky.id, connection=conn, serializer=SERIALIZER).success_callback
        # Run by a real worker (burst): the stranger's job ends failed, saying why, and made nothing.
        worker = build_worker(TrainingWorker, conn)
        assert worker.job_class is AllowedJob
        queue.empty()
        evil = queue.enqueue("os.mkdir", str(target))
        worker.work(burst=True)
        evil.refresh()
        assert evil.is_failed and "not one of this worker's jobs" in (evil.latest_result().exc_string or "")
        assert not target.exists()
    finally:
        conn.flushdb()
