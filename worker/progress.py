"""A run's progress, in its row and, under RQ, in job.meta: updated after every logged training step."""

from __future__ import annotations

from app.platform.extensions import db
from app.tables import TrainingRun
from worker.training import HISTORY_LIMIT


class Progress:
    """Callable as on_log(step, total_steps, epoch, loss, reward_accuracy); update(**fields) for phases."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.state: dict = {"step": 0, "total_steps": None, "epoch": 0.0, "loss": None, "reward_accuracy": None,
                            "history": []}

    def __call__(self, step: int, total_steps: int, epoch: float, loss: float, reward_accuracy: float) -> None:
        row = {"step": step, "loss": loss, "reward_accuracy": reward_accuracy}
        history = (self.state["history"] + [row])[-HISTORY_LIMIT:]
        self.update(step=step, total_steps=total_steps, epoch=round(epoch, 4), loss=loss,
                    reward_accuracy=reward_accuracy, history=history)

    def update(self, **fields) -> None:
        """Merge fields into the progress and store it (a new dict, so the JSON column sees the change)."""
        self.state = {**self.state, **fields}
        run = db.session.get(TrainingRun, self.run_id)
        if run is not None:
            run.progress = dict(self.state)
            db.session.commit()
        try:
            from rq import get_current_job

            job = get_current_job()
        except Exception:  # noqa: BLE001 - no RQ, or not inside a job: the row is enough
            job = None
        if job is not None:
            job.meta["progress"] = dict(self.state)
            job.save_meta()
