"""gunicorn settings: load the model after fork, in each worker (never preload with CUDA); run the prefetcher."""

import subprocess
import sys

from app.platform.config import Config

timeout = 60
# Each request is read whole by the worker's event loop before a thread serves it: a slow or idle client holds a
# socket, never a thread (app/platform/httpworker.py). Threads let an answer go out while another request samples.
worker_class = "app.platform.httpworker.BufferingWorker"
threads = Config().WEB_THREADS  # all but two may wait for the sampler (SAMPLING_SLOTS)
graceful_timeout = 30
# gunicorn 25+ opens a control socket at one path per user ($XDG_RUNTIME_DIR/gunicorn.ctl or ~/.gunicorn/): every
# instance run by that user shares it, so `gunicornc` (or a second instance starting) reaches the wrong server.
# Nothing here uses it: off.
control_socket_disable = True


def when_ready(server):
    """Start the prefetcher process (app/versions/prefetch.py) beside the workers, unless PREFETCH_SIZE is 0."""
    if Config().PREFETCH_SIZE > 0:
        server.prefetcher = subprocess.Popen([sys.executable, "-m", "app.versions.prefetch"])
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
    """Hand the app the worker's heartbeat, set torch threads, then start this process's model listener."""
    from app.lm.device import set_threads
    from app.versions.serving import get_holder, listen_for_changes

    app = worker.wsgi
    # A long streamed answer (the export) calls this while it makes progress: a sync worker otherwise tells the
    # master it is alive only between requests, and is killed after `timeout` in the middle of one.
    app.extensions["prefloop_heartbeat"] = worker.notify
    set_threads(app.config["TORCH_THREADS"])
    holder = get_holder(app)
    try:
        holder.refresh(background=False)  # warm: the first request must not pay for the load
    except Exception as exc:  # noqa: BLE001 - a missing model is reported per request as a 503
        worker.log.warning("no model loaded at start: %s", exc)
    listen_for_changes(app)
