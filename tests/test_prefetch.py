"""The prefetch buffer: ready comparisons of the serving version, refilled in batches at a low-water mark."""

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text

from app.accounts.users import create_user
from app.annotation.comparisons import claim_prefetched
from app.annotation.prompts import import_prompts
from app.platform.extensions import db
from app.tables import Comparison
from app.versions.buffer import ready_count
from app.versions.prefetch import fill_buffer
from harness.live import call, live_server, wait_for_buffer
from tests.conftest import spy_sample_rows


def test_fills_to_the_limit_in_one_batched_call(app, monkeypatch):
    with app.app_context():
        import_prompts(texts=[f"Fix report {i} now." for i in range(20)], source="t", max_chars=500)
    calls = spy_sample_rows(monkeypatch)
    assert fill_buffer(app, limit=8) == 8
    with app.app_context():
        ready = db.session.scalars(select(Comparison).where(Comparison.state == "ready")).all()
        assert ready_count(1, 1) == 8 and {c.model_version_id for c in ready} == {1}
        assert len({c.prompt_id for c in ready}) == 8, "one batch takes 8 different pool prompts"
        assert sorted(c.settings["batch_index"] for c in ready) == list(range(8))
        assert len({c.seed for c in ready}) == 1 and all(len(c.candidates) == 3 for c in ready)
    assert calls[0][0] == 8, "the first call samples all 8 prompts together (later ones only resample duplicates)"


def test_refills_only_at_the_low_water_mark(app, monkeypatch):
    with app.app_context():
        import_prompts(texts=[f"Sign contract {i} today." for i in range(20)], source="t", max_chars=500)
        user, _, _ = create_user(name="ann", role="annotator", password="pw")
        user_id = user.id
    assert fill_buffer(app, limit=8) == 8
    with app.app_context():
        for _ in range(3):
            assert claim_prefetched(user_id=user_id, version_id=1, revision=1) is not None
    assert fill_buffer(app, limit=8) == 0, "5 of 8 left: above half, no refill yet"
    with app.app_context():
        assert claim_prefetched(user_id=user_id, version_id=1, revision=1) is not None
    calls = spy_sample_rows(monkeypatch)
    assert fill_buffer(app, limit=8) == 4
    assert calls[0][0] == 4
    with app.app_context():
        assert ready_count(1, 1) == 8


def _alive(pid: int) -> bool:
    """A process that exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _wait(predicate, *, timeout: float, what: str, srv) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}\n{srv.log_tail()}")


@pytest.mark.slow
def test_gunicorn_runs_one_prefetcher_that_refills_and_dies_with_the_master(tmp_path, starter_dir):
    """Real gunicorn (2 workers): the master starts one prefetcher process, the workers hand out what it made,
    it tops the shared buffer up after claims, it runs only on CPU the requests leave idle (SCHED_IDLE, every
    thread), and it exits by itself when the master is killed with -9."""
    with live_server(tmp_path=tmp_path, starter_path=starter_dir["gpt2"], workers=2, prompts=40,
                     env_extra={"PREFETCH_SIZE": "8"}) as srv:
        pid = int(re.search(r"Started prefetcher with pid: (\d+)", srv.log_path.read_text()).group(1))
        assert "app.versions.prefetch" in Path(f"/proc/{pid}/cmdline").read_text()
        assert wait_for_buffer(srv.db_url, 8, timeout=60) == 8, srv.log_tail()
        # Field 41 of /proc/<tid>/stat is the scheduling policy: 5 is SCHED_IDLE.
        policies = {t.name: t.joinpath("stat").read_text().rsplit(")", 1)[1].split()[38]
                    for t in Path(f"/proc/{pid}/task").iterdir()}
        assert set(policies.values()) == {str(os.SCHED_IDLE)}, policies
        for _ in range(5):
            status, body = call(srv, "POST", "/api/comparisons", "ann", {})
            assert status == 201, body
            # An annotator holds one open comparison at a time: answer it, so the next claim takes a new one.
            assert call(srv, "POST", f"/api/comparisons/{body['id']}/answer", "ann", {"verdict": "skip"})[0] == 201
        # Down to 3 (or to 4 and refilled before the fifth claim): either way one batch of 4+ tops it up again.
        assert wait_for_buffer(srv.db_url, 7, timeout=60) >= 7, srv.log_tail()
        engine = create_engine(srv.db_url)
        with engine.connect() as conn:
            rows = conn.execute(text("select user_id, settings from comparisons")).all()
        engine.dispose()
        handed = [json.loads(s) for user_id, s in rows if user_id is not None]
        assert len(rows) >= 12 and len(handed) == 5
        assert all(s["batch_size"] >= 4 for s in handed), "every comparison came from a prefetched batch"

        os.kill(srv.proc.pid, signal.SIGKILL)
        _wait(lambda: not _alive(pid), timeout=20, what="the prefetcher to exit after its master", srv=srv)
