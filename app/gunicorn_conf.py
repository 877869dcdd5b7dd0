"""gunicorn settings: load the model after fork, in each worker (never preload with CUDA); run the prefetcher."""

import subprocess
import sys

timeout = 60
graceful_timeout = 30


def when_ready(server):
    """Start the prefetcher process (app/prefetch.py) beside the workers, unless PREFETCH_SIZE is 0."""
    from app.config import Config

    if Config().PREFETCH_SIZE > 0:
        server.prefetcher = subprocess.Popen([sys.executable, "-m", "app.prefetch"])
        server.log.info("Started prefetcher with pid: %s", server.prefetcher.pid)


def on_exit(server):
    """Stop the prefetcher with the master (it also exits by itself when the master is gone)."""
    prefetcher = getattr(server, "prefetcher", None)
    if prefetcher is not None and prefetcher.poll() is None:
        prefetcher.terminate()
        try:
            prefetcher.wait(timeout=10)
        except subprocess.TimeoutExpired:
            prefetcher.kill()


def post_worker_init(worker):
    """Set torch threads, then start this process's model listener."""
    from app.lm.device import set_threads
    from app.serving import get_holder, listen_for_changes

    app = worker.wsgi
    set_threads(app.config["TORCH_THREADS"])
    holder = get_holder(app)
    try:
        holder.refresh(background=False)  # warm: the first request must not pay for the load
    except Exception as exc:  # noqa: BLE001 - a missing model is reported per request as a 503
        worker.log.warning("no model loaded at start: %s", exc)
    listen_for_changes(app)
