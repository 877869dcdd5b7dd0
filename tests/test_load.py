"""bench/load.py's client: a busy 503 is waited out as the page does, and how long it said to wait is recorded."""

from __future__ import annotations

from bench import load


def test_a_busy_503_is_waited_out_for_its_retry_after_and_recorded(monkeypatch):
    slept = []
    monkeypatch.setattr(load.time, "sleep", slept.append)  # the wait itself is not what is tested
    out = {"busy_waits": []}
    load.wait_out({"error": "The model is busy: 6 requests are waiting for it here, about 7 s of sampling. "
                            "Try again in 7 s."}, out)
    load.wait_out({"error": "The model is busy: every thread that may wait for it is waiting. Try again in 0 s."}, out)
    assert out == {"busy_waits": [7, 1]} and slept == [7, 1]  # 1 s at least, as the page waits


def test_a_runs_record_keeps_the_first_tracebacks_of_the_server_log(tmp_path):
    log = tmp_path / "gunicorn.log"
    entries = [f"Traceback (most recent call last):\n  File \"x.py\", line {i}\nValueError: {i}" for i in range(5)]
    log.write_text("[INFO] Booting worker\n" + "\n[INFO] ok\n".join(entries) + "\n", encoding="utf-8")
    assert load.tracebacks(log, most=3, lines=3) == entries[:3]
    clean = tmp_path / "clean.log"
    clean.write_text("[INFO] Booting worker\n", encoding="utf-8")
    assert load.tracebacks(clean) == []
