"""Queueing training runs on the real Redis: single flight, validation, and a clear 503 without Redis."""

import threading

import pytest
import redis
from rq import Queue
from sqlalchemy import func, select

from app.platform.extensions import db
from app.tables import Preference, TrainingRun
from app.training.jobs import SERIALIZER
from tests import services

pytestmark = [pytest.mark.redis, pytest.mark.parametrize("backend", services.BOTH_BACKENDS, indirect=True)]


@pytest.fixture
def queue_app(app):
    """The app pointed at the test Redis, with an empty `training` queue."""
    url = services.redis_url()
    conn = redis.Redis.from_url(url)
    conn.flushdb()
    app.config["REDIS_URL"] = url
    app.config["TRAIN_MIN_PAIRS"] = 2
    yield app
    conn.flushdb()


def click(client, user, n=2):
    """Answer n comparisons by picking the first candidate."""
    for i in range(n):
        comp = client.post("/api/comparisons", json={"prompt": f"Give me the file {i} now."}, headers=user["headers"])
        assert comp.status_code == 201, comp.json
        res = client.post(f"/api/comparisons/{comp.json['id']}/answer",
                          json={"candidate_id": comp.json["candidates"][0]["id"]}, headers=user["headers"])
        assert res.status_code == 201, res.json


def test_retrain_enqueues_one_job_and_returns_the_open_run(queue_app, client, admin):
    """202 with the RQ job id as the run id; a second request while it is queued returns the same run (200)."""
    click(client, admin)
    first = client.post("/api/training-runs", json={"beta": 0.2, "lora": True}, headers=admin["headers"])
    assert first.status_code == 202, first.json
    assert first.json["status"] == "queued"
    second = client.post("/api/training-runs", json={}, headers=admin["headers"])
    assert second.status_code == 200 and second.json["id"] == first.json["id"]

    queue = Queue("training", connection=redis.Redis.from_url(queue_app.config["REDIS_URL"]), serializer=SERIALIZER)
    assert queue.job_ids == [first.json["id"]]
    job = queue.fetch_job(first.json["id"])
    assert job.func_name == "worker.dpo.run_dpo" and tuple(job.args) == (first.json["id"],)  # JSON: a list
    assert job.timeout == queue_app.config["TRAIN_JOB_TIMEOUT"]

    run = client.get(f"/api/training-runs/{first.json['id']}", headers=admin["headers"]).json
    assert run["config"]["beta"] == 0.2 and run["config"]["lora"] is True
    assert run["snapshot"]["clicks"] == 2 and run["snapshot"]["pairs"] == 4 and len(run["snapshot"]["hash"]) == 64
    assert run["parent_version_id"] == 1 and run["requested_by"] == "adm"


def test_two_admins_at_once_make_exactly_one_job(queue_app, client, users):
    """Concurrent requests from two processes' worth of sessions: the Redis lock lets one create the run."""
    a, b = users.create("a1", "admin"), users.create("a2", "admin")
    click(client, a)
    results, barrier = [], threading.Barrier(4)

    def request(user):
        c = queue_app.test_client()
        barrier.wait()
        res = c.post("/api/training-runs", json={}, headers=user["headers"])
        results.append((res.status_code, res.json["id"]))

    threads = [threading.Thread(target=request, args=(u,)) for u in (a, b, a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(code for code, _ in results) == [200, 200, 200, 202], results
    assert len({run_id for _, run_id in results}) == 1
    with queue_app.app_context():
        assert db.session.scalar(select(func.count()).select_from(TrainingRun)) == 1
    assert Queue("training", connection=redis.Redis.from_url(queue_app.config["REDIS_URL"])).count == 1


def test_a_lost_job_is_reconciled_failed_and_a_new_run_can_start(queue_app, client, admin):
    """If the job vanished from Redis (e.g. Redis was flushed), the run is closed as failed, not open forever."""
    click(client, admin)
    first = client.post("/api/training-runs", json={}, headers=admin["headers"]).json
    redis.Redis.from_url(queue_app.config["REDIS_URL"]).flushdb()
    run = client.get(f"/api/training-runs/{first['id']}", headers=admin["headers"]).json
    assert run["status"] == "failed" and "lost" in run["error"]
    again = client.post("/api/training-runs", json={}, headers=admin["headers"])
    assert again.status_code == 202 and again.json["id"] != first["id"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"beta": "high"}, "beta must be a number"),
        ({"epochs": 1.5}, "epochs must be a number"),
        ({"epochs": 0}, "between"),
        ({"learning_rate": 5}, "between"),
        ({"lora": "yes"}, "true or false"),
        ({"optimizer": "sgd"}, "unknown fields"),
        ([1, 2], "JSON object"),
    ],
)
def test_bad_overrides_are_400_and_queue_nothing(queue_app, client, admin, body, message):
    click(client, admin)
    res = client.post("/api/training-runs", json=body, headers=admin["headers"])
    assert res.status_code == 400 and message in res.json["error"], res.json
    with queue_app.app_context():
        assert db.session.scalar(select(func.count()).select_from(TrainingRun)) == 0
    assert Queue("training", connection=redis.Redis.from_url(queue_app.config["REDIS_URL"])).count == 0


def test_too_few_clicks_is_a_clear_409(queue_app, client, admin):
    res = client.post("/api/training-runs", json={}, headers=admin["headers"])
    assert res.status_code == 409 and "not enough preferences" in res.json["error"]


def test_unknown_run_is_404(queue_app, client, admin):
    assert client.get("/api/training-runs/nope", headers=admin["headers"]).status_code == 404


@pytest.mark.parametrize("arch", ["t5"])
def test_kto_on_an_encoder_decoder_model_is_refused_before_it_queues(app, client, admin):
    """TRL's KTOTrainer is decoder-only: a Retrain under TRAIN_LOSS=kto with T5 serving is a clear 409, no run."""
    app.config["TRAIN_LOSS"] = "kto"
    response = client.post("/api/training-runs", json={}, headers=admin["headers"])
    assert response.status_code == 409 and "decoder-only" in response.json["error"], response.json
    with app.app_context():
        assert db.session.query(TrainingRun).count() == 0


def test_redis_down_retrain_is_503_and_annotation_keeps_working(app, client, admin):
    """Nothing listens on the port: Retrain answers 503 with a reason; clicks and export still work."""
    from harness.live import free_port

    app.config["REDIS_URL"] = f"redis://127.0.0.1:{free_port()}/0"
    app.config["TRAIN_MIN_PAIRS"] = 2
    click(client, admin)
    res = client.post("/api/training-runs", json={}, headers=admin["headers"])
    assert res.status_code == 503
    assert "Retrain is unavailable" in res.json["error"] and "Annotation keeps working" in res.json["error"]
    assert client.get("/api/preferences/export", headers=admin["headers"]).get_data(as_text=True).count("\n") == 4
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(TrainingRun)) == 0
        assert db.session.scalar(select(func.count()).select_from(Preference)) == 2


def test_no_redis_configured_is_503(app, client, admin):
    app.config["TRAIN_MIN_PAIRS"] = 2
    click(client, admin)
    res = client.post("/api/training-runs", json={}, headers=admin["headers"])
    assert res.status_code == 503 and "REDIS_URL" in res.json["error"]


def test_the_run_stores_a_bound_and_the_snapshot_is_taken_outside_the_lock(queue_app, client, admin, monkeypatch):
    """The run row keeps the newest preference id, not every id, and the pass over the clicks (which grows with
    them) runs before the 30 s Redis lock is taken, so a large snapshot cannot outlive the lock."""
    from app.dataset import snapshot
    from app.training import jobs

    conn = redis.Redis.from_url(queue_app.config["REDIS_URL"])
    click(client, admin)
    held, original = [], snapshot.choice_preferences

    def spy(*args, **kwargs):
        held.append(bool(conn.exists(jobs.LOCK_KEY)))
        return original(*args, **kwargs)

    monkeypatch.setattr(snapshot, "choice_preferences", spy)
    res = client.post("/api/training-runs", json={}, headers=admin["headers"])
    assert res.status_code == 202, res.json
    assert held == [False]
    with queue_app.app_context():
        run = db.session.get(TrainingRun, res.json["id"])
        newest = db.session.scalar(select(func.max(Preference.id)))
        assert run.snapshot == {"max_preference_id": newest, "overlap_pairs": "each", "clicks": 2, "pairs": 4}


def test_jobs_are_json_not_pickle(queue_app, client, admin):
    """What the web puts in Redis for the worker is JSON: reading it back can never run code."""
    import json
    import zlib

    click(client, admin)
    run_id = client.post("/api/training-runs", json={}, headers=admin["headers"]).json["id"]
    raw = redis.Redis.from_url(queue_app.config["REDIS_URL"]).hget(f"rq:job:{run_id}", "data")
    assert json.loads(zlib.decompress(raw)) == ["worker.dpo.run_dpo", None, [run_id], {}]


@pytest.mark.parametrize("status", ["failed", "rejected", "succeeded", "queued"])
def test_a_redelivered_job_trains_only_a_queued_run(queue_app, client, admin, monkeypatch, status):
    """Whatever re-queues a job (rq-dashboard's requeue, RQ's retry), a run that already failed, was rejected or
    succeeded is final: the job returns without training. Only a queued run trains."""
    import worker.dpo

    click(client, admin)
    run_id = client.post("/api/training-runs", json={}, headers=admin["headers"]).json["id"]
    trained = []
    monkeypatch.setattr(worker.dpo, "train_and_register", lambda run_id, progress: trained.append(run_id))
    with queue_app.app_context():
        run = db.session.get(TrainingRun, run_id)
        run.status = status
        db.session.commit()
        worker.dpo.run_dpo(run_id)
        assert trained == ([run_id] if status == "queued" else [])
        if status != "queued":
            assert db.session.get(TrainingRun, run_id).status == status
