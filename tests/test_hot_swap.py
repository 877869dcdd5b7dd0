"""Hot-swap in real gunicorn with two workers and real Redis, under a steady stream of annotation requests."""

from __future__ import annotations

import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
import redis
from sqlalchemy import create_engine, text

from harness.live import call, live_server, wait_for_buffer, wait_serving, worker_pids
from tests import services

pytestmark = [pytest.mark.slow, pytest.mark.redis]


class Load:
    """Annotators that keep asking for the next comparison and answering it, counting every failure."""

    def __init__(self, srv, users: list[str]) -> None:
        self.srv, self.users = srv, users
        self.ok, self.failures, self.stop = 0, [], threading.Event()
        self.threads = [threading.Thread(target=self.run, args=(u,), daemon=True) for u in users]

    def run(self, user: str) -> None:
        while not self.stop.is_set():
            try:
                status, comp = call(self.srv, "POST", "/api/comparisons", user, {})
                if status != 201:
                    self.failures.append((status, comp))
                    continue
                status, body = call(self.srv, "POST", f"/api/comparisons/{comp['id']}/answer", user,
                                    {"candidate_id": comp["candidates"][0]["id"]})
                if status not in (200, 201):
                    self.failures.append((status, body))
                    continue
                self.ok += 1
            except Exception as exc:  # noqa: BLE001 - a dropped connection or a timeout is a failed request too
                self.failures.append(("error", repr(exc)))

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)


def test_swap_under_load_then_refuse_a_corrupt_checkpoint_then_roll_back(tmp_path, starter_dir):
    url = services.redis_url()
    redis.Redis.from_url(url).flushdb()
    users = {"a1": "annotator", "a2": "annotator", "a3": "annotator", "opr": "operator"}
    with live_server(tmp_path=tmp_path, starter_path=starter_dir["gpt2"], workers=2, users=users, prompts=60,
                     env_extra={"REDIS_URL": url, "PREFETCH_SIZE": "40", "MODEL_CHECK_SECONDS": "30"}) as srv:
        pids = worker_pids(srv)
        assert len(pids) == 2
        wait_serving(srv, 1, pids=pids)
        # A buffer deep enough that three annotators clicking without a pause never empty it between the
        # prefetcher's polls (0.1 s), so version 1 still has ready comparisons to retire when the swap comes.
        assert wait_for_buffer(srv.db_url, 40, timeout=60) >= 40, srv.log_tail()
        out = srv.flask("models", "import", str(srv.model_store / "1"))
        assert "as version 2" in out

        # 1. Activate version 2 while three annotators keep working: no request fails, both processes swap.
        with Load(srv, ["a1", "a2", "a3"]) as load:
            time.sleep(3)
            before = load.ok
            status, body = call(srv, "POST", "/api/model-versions/2/activate", "opr", {"reason": "hot-swap test"})
            assert status == 200 and body["previous"] == 1, body
            swapped_at = time.monotonic()
            wait_serving(srv, 2, pids=pids)
            # MODEL_CHECK_SECONDS is 30 here, so this was the Redis notification, not the periodic check.
            assert time.monotonic() - swapped_at < 30
            time.sleep(3)
        assert load.failures == [], load.failures[:5]
        assert before > 0 and load.ok > before, "requests were served before and after the swap"
        assert worker_pids(srv) == pids, "no worker was restarted"

        engine = create_engine(srv.db_url)
        try:
            with engine.connect() as conn:
                latest = conn.execute(text("select model_version_id from comparisons where user_id is not null "
                                           "order by id desc limit 3")).scalars().all()
                ready_old = conn.execute(text("select count(*) from comparisons where state = 'ready' "
                                              "and model_version_id = 1")).scalar_one()
                stale = conn.execute(text("select count(*) from comparisons where state = 'stale'")).scalar_one()
            assert latest == [2, 2, 2]
            # Prefetched comparisons of version 1 were retired when the processes swapped.
            assert stale > 0 and ready_old == 0

            # 2. A corrupt checkpoint (same sizes, so the manifest check passes; the bytes are garbage) is refused
            # by every process, which keeps serving version 2; the operator sees why.
            srv.flask("models", "import", str(srv.model_store / "1"))
            weights = srv.model_store / "3" / "model.safetensors"
            raw = bytearray(weights.read_bytes())
            raw[:64] = b"\xff" * 64
            weights.write_bytes(bytes(raw))
            status, body = call(srv, "POST", "/api/model-versions/3/activate", "opr", {"reason": "corrupt test"})
            assert status == 200, body
            seen = wait_serving(srv, 2, pids=pids, error="version 3 failed to load")
            assert all(s["wanted"] == 3 for s in seen.values())
            assert call(srv, "POST", "/api/comparisons", "a1", {"prompt": "Send the report."})[0] == 201
            with engine.connect() as conn:
                failed = conn.execute(text("select count(*) from audit_events where action = 'load_failed' "
                                           "and to_version_id = 3")).scalar_one()
            assert failed >= 2, "each process logs its refusal in the audit log"
            page = _ops_page(srv)
            assert "version 3 failed to load" in page

            # 3. Roll back to version 1: every process serves it again, without a restart.
            status, body = call(srv, "POST", "/api/model-versions/1/activate", "opr", {"reason": "roll back"})
            assert status == 200 and body["previous"] == 3
            wait_serving(srv, 1, pids=pids)
            assert worker_pids(srv) == pids
        finally:
            engine.dispose()


def _ops_page(srv) -> str:
    """The operator's versions page as HTML (logged in with a password, as a person would)."""
    import http.cookiejar

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    login = opener.open(srv.url("/auth/login"), timeout=30).read().decode()
    token = re.search(r'name="csrf_token" value="([^"]+)"', login).group(1)
    form = urllib.parse.urlencode({"name": "opr", "password": srv.users["opr"]["password"], "csrf_token": token})
    opener.open(srv.url("/auth/login"), data=form.encode(), timeout=30).read()
    # The page shows the answering process's status and the audit log, which holds every refusal.
    return opener.open(srv.url("/ops/versions"), timeout=30).read().decode()


