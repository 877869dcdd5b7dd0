"""gunicorn settings: load the model after fork, in each worker (never preload with CUDA)."""

import os

timeout = 60
graceful_timeout = 30


def post_worker_init(worker):
    """Set torch threads, then start this process's model listener and prefetch thread."""
    import torch

    torch.set_num_threads(int(os.environ.get("TORCH_THREADS", "1")))
    from app.prefetch import start_prefetcher
    from app.serving import get_holder, listen_for_changes

    app = worker.wsgi
    holder = get_holder(app)
    try:
        holder.refresh(background=False)  # warm: the first request must not pay for the load
    except Exception as exc:  # noqa: BLE001 - a missing model is reported per request as a 503
        worker.log.warning("no model loaded at start: %s", exc)
    listen_for_changes(app)
    start_prefetcher(app)
