"""Training past one device: the training step on two CPU processes (torchrun, gloo), as a multi-GPU worker runs it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from app.training.spec import TrainingSpec
from tests.test_seq2seq_dpo import corpus_pairs

pytestmark = pytest.mark.slow


def starter_rows(arch: str, n: int, seed: int = 0) -> list[dict]:
    """The starter task's pairs in the arch's own prompt format."""
    prompt = "Rewrite politely: {input}\nPolite:" if arch == "gpt2" else "Rewrite politely: {input}"
    return [p | {"prompt": prompt.replace("{input}", p["prompt"].removeprefix("Rewrite politely: "))}
            for p in corpus_pairs(n, seed=seed)]


def spec(**overrides) -> TrainingSpec:
    """The default run's spec with overrides."""
    from app.platform.config import Config

    return TrainingSpec.from_config(vars(Config()), overrides)


def launched(folder_prefix: str = "dpo-processes-") -> list[int]:
    """Processes now running the launched training step (worker.distributed)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if "worker.distributed" in cmd and folder_prefix in cmd:
                pids.append(int(entry.name))
    return pids


def test_two_processes_take_the_same_seq2seq_steps_as_one(starter_dir):
    """The seq2seq loop on two processes: each scores half of every batch and the gradients are summed, so the
    trained weights are the one-process weights (to float rounding, which Adam amplifies where a gradient is near
    zero) and the logged losses match step by step."""
    from worker.distributed import train_in_processes
    from worker.training import train_seq2seq

    pairs = starter_rows("t5", 12)
    step = dict(init_path=str(starter_dir["t5"]), pairs=pairs, spec=spec(epochs=1, batch_size=4, lr=1e-3, seed=3),
                loss_type=["sigmoid"], loss_weights=[1.0])
    one, _, one_summary = train_seq2seq(**step)
    logged = []
    two, _, two_summary = train_in_processes(processes=2, arch="seq2seq", on_log=lambda *row: logged.append(row),
                                             **step)
    assert one_summary["steps"] == two_summary["steps"] == 3 and [r[0] for r in logged] == [1, 2, 3]
    for a, b in zip(one_summary["history"], two_summary["history"], strict=True):
        # Two processes sum the halves' gradients in another order, and Adam divides by the root of tiny second
        # moments, so float rounding grows over steps: 5e-5 on a loss of 0.61 at step 3 was seen (1e-5 was too tight).
        assert a["loss"] == pytest.approx(b["loss"], abs=5e-4)
        assert a["reward_accuracy"] == pytest.approx(b["reward_accuracy"], abs=1e-6)
    first, second = one.state_dict(), two.state_dict()
    assert first.keys() == second.keys()
    # Adam steps by about lr x sign(gradient) where a gradient is near zero, so a rounding difference there moves a
    # weight by up to lr a step: on one machine 171 of 332,672 weights (0.05%) differed by over 1e-4 (at most 2e-3).
    # The steps are the same when nearly every weight agrees and the differences are tiny beside how far they moved.
    import torch

    start = type(one).from_pretrained(str(starter_dir["t5"])).state_dict()
    diff = torch.cat([(first[k] - second[k]).abs().flatten().float() for k in first])
    moved = torch.cat([(first[k] - start[k]).abs().flatten().float() for k in first])
    assert (diff > 1e-4).float().mean().item() < 0.005, (diff > 1e-4).sum().item()
    assert diff.mean().item() < 0.01 * moved.mean().item(), (diff.mean().item(), moved.mean().item())
    # and they moved (not two untrained copies that agree)
    assert max((start[k] - second[k]).abs().max().item() for k in start) > 1e-3
    assert launched() == []


def test_two_processes_train_gpt2_with_lora_and_hand_back_a_plain_model(starter_dir):
    """TRL's trainer under torchrun on two processes with LoRA: the loss falls, the progress comes from rank 0, and
    the model handed back has the adapters merged (plain GPT-2 weights)."""
    from worker.distributed import train_in_processes

    logged = []
    model, tokenizer, summary = train_in_processes(
        processes=2, arch="gpt2", init_path=str(starter_dir["gpt2"]), pairs=starter_rows("gpt2", 16),
        spec=spec(epochs=2, batch_size=4, lr=5e-4, seed=1, lora=True),
        loss_type=["sigmoid"], loss_weights=[1.0], on_log=lambda *row: logged.append(row))
    assert summary["steps"] == len(logged) >= 4 and summary["device"] == "cpu"
    assert summary["loss_last"] < summary["loss_first"], summary
    assert not any("lora" in k for k in model.state_dict()) and tokenizer is not None
    assert launched() == []


def test_a_failure_in_the_launched_processes_is_the_run_error_and_leaves_none_behind(tmp_path):
    """A training step that cannot start (no model at the path): RuntimeError with torchrun's exit and the end of its
    log, and no launched process left."""
    from worker.distributed import train_in_processes

    with pytest.raises(RuntimeError, match=r"training on 2 processes failed \(torchrun exit 1\)") as failed:
        train_in_processes(processes=2, arch="gpt2", init_path=str(tmp_path / "nothing"), pairs=starter_rows("gpt2", 4),
                           spec=spec(), loss_type=["sigmoid"], loss_weights=[1.0])
    assert "nothing" in str(failed.value)
    assert launched() == []


def test_a_run_on_two_processes_publishes_one_version_through_the_gate(app, monkeypatch):
    """run_dpo with TRAIN_PROCESSES=2: trained on two processes, published once, gated once and registered with the
    run's progress, exactly as a one-process run (tests/test_dpo.py)."""
    from app.platform.extensions import db
    from app.tables import ModelVersion, TrainingRun
    from tests.test_dpo import TINY_SFT_WEIGHT, collect_clicks, create_run
    from worker.dpo import run_dpo

    app.config["MAX_NEW_TOKENS"] = 40
    app.config["TRAIN_PROCESSES"] = 2
    ids = collect_clicks(app, monkeypatch)
    run_id = create_run(app, ids, sft_weight=TINY_SFT_WEIGHT, gate={"eval_prompts": 12})
    with app.app_context():
        out = run_dpo(run_id)
        run = db.session.get(TrainingRun, run_id)
        versions = db.session.query(ModelVersion).order_by(ModelVersion.id).all()
        assert run.status == out["status"] == "succeeded", (run.status, run.error, run.metrics)
        assert [v.id for v in versions] == [1, 2] and versions[1].run_id == run_id
        assert run.metrics["accuracy_candidate"] > run.metrics["accuracy_parent"]
        assert run.progress["phase"] == "done" and run.progress["step"] == run.progress["total_steps"] > 1
        assert versions[1].manifest["training"]["processes"] == 2
    assert sorted(p.name for p in Path(app.config["MODEL_STORE"]).iterdir() if not p.name.startswith(".")) == [
        "1", "2"]
    assert launched() == [] and os.environ.get("WORLD_SIZE") is None
