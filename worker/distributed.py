"""Training past one device: a run's training step on TRAIN_PROCESSES processes, launched with torchrun.

The job (worker/dpo.py) stays one process: it reads the run, builds the pairs, and after training publishes,
gates and registers once. Only the step `train_causal` / `train_seq2seq` runs in the launched processes, each
calling the same function as a one-process run; TRL's trainer (through Accelerate) and the seq2seq loop (through
Accelerate's reduce) split the batches between them and average the gradients. Rank 0 saves the trained model
and writes each logged step to a file that the job reads into the run's progress.

    python -m torch.distributed.run --standalone --nproc-per-node N -m worker.distributed <job folder>
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from app.training.spec import TrainingSpec

# Seconds torchrun gets to stop its processes after SIGTERM, before SIGKILL: within the work-horse's own grace
# (HORSE_GRACE, 10 s), so the job still marks its run failed before it is killed.
STOP_GRACE = 5.0


def train_in_processes(*, processes: int, arch: str, init_path: str, pairs: list[dict], spec: TrainingSpec,
                       loss_type: list, loss_weights: list, on_log=None):
    """train_causal / train_seq2seq on `processes` processes; returns what they return (model, tokenizer, summary).

    A stop (the worker's SIGTERM raised into the job) or any failure here ends every launched process."""
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    from app.lm.checkpoint import load_tokenizer
    from app.platform.processes import die_with_parent

    with tempfile.TemporaryDirectory(prefix="dpo-processes-") as tmp:
        folder = Path(tmp)
        (folder / "job.json").write_text(json.dumps({
            "arch": arch, "init_path": init_path, "pairs": pairs, "spec": spec.to_dict(),
            "loss_type": loss_type, "loss_weights": loss_weights}))
        log = folder / "torchrun.log"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
               "-m", "worker.distributed", str(folder)]
        env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("TORCH_THREADS", "1")}
        with log.open("wb") as out:
            # Its own process group, so a stop reaches torchrun and every training process it started; and told to
            # stop if this process dies without stopping it (a SIGKILL).
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                    preexec_fn=lambda: die_with_parent(signal.SIGTERM))
            try:
                follow(proc, folder / "progress.jsonl", on_log)
            finally:
                stop(proc)
        if proc.returncode != 0:
            tail = log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"training on {processes} processes failed (torchrun exit {proc.returncode}):\n{tail}")
        summary = json.loads((folder / "summary.json").read_text())
        auto = AutoModelForSeq2SeqLM if arch == "seq2seq" else AutoModelForCausalLM
        model = auto.from_pretrained(folder / "model")
        model.eval()
        return model, load_tokenizer(str(folder / "model")), summary


def follow(proc: subprocess.Popen, progress: Path, on_log) -> None:
    """Until `proc` exits, hand each step rank 0 logs to on_log (the run's progress), reading only what is new."""
    offset = 0
    while True:
        done = proc.poll() is not None
        if on_log is not None and progress.exists():
            with progress.open("rb") as f:
                f.seek(offset)
                new = f.read()
            whole = new[: new.rfind(b"\n") + 1]  # a line still being written waits for the next look
            offset += len(whole)
            for line in whole.splitlines():
                on_log(*json.loads(line))
        if done:
            return
        time.sleep(0.5)


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM torchrun's group (it stops its processes), SIGKILL it after STOP_GRACE; reap it."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, STOP_GRACE), (signal.SIGKILL, None)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def main(folder: Path) -> None:
    """One launched process: train on the job's pairs; rank 0 logs the steps, saves the model and the summary."""
    from app.lm.device import set_threads
    from app.platform.processes import die_with_parent
    from worker.training import trainer_for

    die_with_parent(signal.SIGTERM)  # torchrun killed outright: do not train on for nobody
    set_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    rank = int(os.environ.get("RANK", "0"))
    job = json.loads((folder / "job.json").read_text())
    progress = folder / "progress.jsonl"

    def on_log(*row) -> None:
        if rank == 0:
            with progress.open("a") as f:
                f.write(json.dumps(list(row)) + "\n")

    model, tokenizer, summary = trainer_for(job["arch"])(init_path=job["init_path"], pairs=job["pairs"],
                                      spec=TrainingSpec.from_dict(job["spec"]), loss_type=job["loss_type"],
                                      loss_weights=job["loss_weights"], on_log=on_log)
    if rank == 0:
        model.save_pretrained(folder / "model")
        tokenizer.save_pretrained(folder / "model")
        # Where it trained (the job loads the result on the CPU to publish it).
        (folder / "summary.json").write_text(json.dumps(summary | {"device": str(model.device)}))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
