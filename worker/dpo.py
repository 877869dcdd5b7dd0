"""The training job: snapshot the pairs, config, trainer, train, save, evaluate, register, promote.

run_dpo(run_id) is what RQ runs. It takes the TrainingRun id, never ORM objects, and reads top to bottom like
TRL's DPO script. Heavy imports (torch, transformers, trl, peft) happen inside the functions: the worker entry
preloads them once, and the web can import this module's light helpers without paying for them.

Which model training starts from, and which model is the reference, matters more than any hyper-parameter
(STACK.md, "Iterated DPO from clicks"): plain DPO with start = reference = last version collapses into
gibberish within three rounds. So:
- start "base": train from the root ancestor (the starter) with it as the reference, on all clicks so far;
- start "active": train from the parent version with it as the reference, plus TRL's "sft" loss term.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
import traceback
from pathlib import Path

from flask import current_app, has_app_context

from app.extensions import db
from app.tables import ModelVersion, Prompt, TrainingRun, utcnow

log = logging.getLogger(__name__)

HISTORY_LIMIT = 500  # progress rows kept on the run (a long run keeps its latest steps)


def run_dpo(run_id: str) -> dict:
    """RQ job: train, evaluate and register a new version for TrainingRun `run_id`; return a summary."""
    if has_app_context():
        return _run(run_id)
    from app import create_app

    with create_app().app_context():
        return _run(run_id)


def _run(run_id: str) -> dict:
    run = db.session.get(TrainingRun, run_id)
    if run is None:
        raise LookupError(f"training run {run_id} does not exist")
    if run.status in ("succeeded", "rejected"):
        # A duplicate delivery of a finished job: never train and publish a second version for one run.
        log.warning("run %s already finished (%s); nothing to do", run_id, run.status)
        return {"run_id": run_id, "status": run.status, "version_id": run.version_id,
                "activated": (run.metrics or {}).get("activated", False), "metrics": run.metrics}
    run.status, run.started_at, run.finished_at, run.error = "running", utcnow(), None, ""
    db.session.commit()
    progress = Progress(run_id)
    try:
        return _train_evaluate_register(run_id, progress)
    except BaseException as exc:
        _mark_failed(run_id, exc, progress)
        raise


def _mark_failed(run_id: str, exc: BaseException, progress: Progress) -> None:
    """Record the failure on the row; a second failure here must not hide the first."""
    try:
        db.session.rollback()
        run = db.session.get(TrainingRun, run_id)
        run.status, run.error, run.finished_at = "failed", error_summary(exc), utcnow()
        db.session.commit()
        progress.update(phase="failed")
    except Exception:  # noqa: BLE001 - e.g. the database is down; the job's own exception is re-raised
        log.exception("could not mark run %s failed", run_id)


def _train_evaluate_register(run_id: str, progress: Progress) -> dict:
    import torch

    from app.generation import DEFAULT_TEMPLATE, load_checkpoint, read_manifest
    from app.jobs import training_config
    from app.preferences import build_pairs, choice_preferences, snapshot_hash
    from app.registry import RegistryError, activate_version, record_event, register_version
    from worker.checkpoints import publish_checkpoint
    from worker.evaluation import evaluate_version

    torch.set_num_threads(current_app.config["TORCH_THREADS"])  # a no-op when the worker entry already did it
    started = time.perf_counter()
    run = db.session.get(TrainingRun, run_id)
    actor = f"run:{run_id}"

    # Config: what the web recorded on the run, over the app's defaults.
    defaults = training_config()
    cfg = {**defaults, **(run.config or {})}
    cfg["gate"] = {**defaults["gate"], **((run.config or {}).get("gate") or {})}

    # Models: the parent is what served when the run was requested; the base is its root ancestor (the starter).
    parent = db.session.get(ModelVersion, run.parent_version_id) if run.parent_version_id else None
    if parent is None:
        raise LookupError(f"run {run_id}: parent version {run.parent_version_id} does not exist")
    base = root_ancestor(parent)
    init, loss_type, loss_weights = training_plan(cfg, parent=parent, base=base)

    # Snapshot: the preference ids were fixed when the run was requested.
    ids = list((run.snapshot or {}).get("preference_ids") or [])
    pairs = list(build_pairs(choice_preferences(ids=ids)))
    train_pairs, heldout_pairs = split_by_prompt(pairs, holdout=float(cfg["holdout"]), seed=int(cfg["seed"]))
    if not train_pairs:
        raise ValueError(f"run {run_id}: the snapshot has no training pairs ({len(ids)} preference ids)")
    data_hash = snapshot_hash(pairs)
    if not run.snapshot_hash:
        run.snapshot_hash = data_hash
    found = {p["preference_id"] for p in pairs}
    missing = sorted(set(ids) - found)
    snapshot = {
        "hash": data_hash, "pairs": len(pairs), "train_pairs": len(train_pairs), "heldout_pairs": len(heldout_pairs),
        "preference_ids": len(ids), "missing_preference_ids": missing[:50],
        "heldout_inputs": sorted({p["input"] for p in heldout_pairs}),
    }
    progress.update(phase="training", total_steps=None, pairs=len(train_pairs), heldout=len(heldout_pairs))

    # Train.
    train = train_seq2seq if parent.arch == "seq2seq" else train_causal
    model, tokenizer, summary = train(
        init_path=init.path, pairs=train_pairs, cfg=cfg, loss_type=loss_type, loss_weights=loss_weights,
        on_log=progress,
    )
    training = {**cfg, "loss_type": loss_type, "loss_weights": loss_weights, "device": str(model.device)}

    # Save, then evaluate what was saved: the gate loads the written files, exactly what serving would load.
    template = (parent.manifest or {}).get("prompt_template", DEFAULT_TEMPLATE)
    parent_loaded = load_checkpoint(parent.path, version_id=parent.id)
    base_loaded = parent_loaded if base.id == parent.id else load_checkpoint(base.path, version_id=base.id)
    eval_texts = evaluation_texts(train_pairs, limit=2 * int(cfg["gate"]["eval_prompts"]))
    gate: dict = {}

    def save(tmp: Path) -> dict:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        progress.update(phase="evaluating")
        candidate = load_checkpoint(str(tmp))
        candidate.prompt_template = template  # the manifest carrying it is written after save() returns
        gate.update(evaluate_version(
            candidate=candidate, parent=parent_loaded, base=base_loaded, heldout_pairs=heldout_pairs,
            eval_prompts=eval_texts, gate_cfg=cfg["gate"], n_samples=3, seed=int(cfg["seed"]),
            temperature=current_app.config["TEMPERATURE"], top_p=current_app.config["TOP_P"],
            max_new_tokens=current_app.config["MAX_NEW_TOKENS"],
        ))
        return {"metrics": {"train": summary, "gate": gate}}

    manifest = {
        "kind": "dpo", "arch": parent.arch, "base_model": base.base_model, "base_version": base.id,
        "parent_version": parent.id, "init_version": init.id, "reference_version": init.id, "run_id": run_id,
        "snapshot_hash": data_hash, "pair_count": len(pairs), "snapshot": snapshot, "training": training,
        "prompt_template": template,
    }
    number, path = publish_checkpoint(store=current_app.config["MODEL_STORE"], save=save, manifest=manifest)

    # Register.
    passed = bool(gate["passed"])
    version_metrics = {**{k: v for k, v in gate.items() if not k.startswith("examples")},
                       "loss_first": summary["loss_first"], "loss_last": summary["loss_last"],
                       "train_pairs": len(train_pairs), "seconds_training": summary["seconds"]}
    register_version(number=number, path=path, manifest=read_manifest(path), status="ready" if passed else "rejected",
                     metrics=version_metrics, run_id=run_id)
    metrics = {**version_metrics, "activated": False}
    note = ""
    if passed:
        try:
            activate_version(version_id=number, actor=actor, action="promote", only_if_active=parent.id,
                             reason=f"run {run_id} passed the gate (held-out accuracy "
                                    f"{_fmt(gate.get('accuracy_candidate'))} vs {_fmt(gate.get('accuracy_parent'))})")
            metrics["activated"] = True
        except RegistryError as exc:
            # A rollback (or another activation) happened while this trained: it wins, this version waits.
            note = f"version {number} passed the gate but was not activated: {exc}"
            metrics["not_activated_reason"] = str(exc)
            record_event(actor=actor, action="promote_skipped", reason=note, to_version_id=number)
    else:
        record_event(actor=actor, action="run_rejected", reason="; ".join(gate["reasons"]), to_version_id=number)

    run = db.session.get(TrainingRun, run_id)
    metrics["seconds_total"] = round(time.perf_counter() - started, 2)
    run.version_id, run.metrics, run.error = number, metrics, note
    run.status, run.finished_at = ("succeeded" if passed else "rejected"), utcnow()
    db.session.commit()
    progress.update(phase="done")
    return {"run_id": run_id, "status": run.status, "version_id": number, "activated": metrics["activated"],
            "metrics": metrics}


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def root_ancestor(version: ModelVersion) -> ModelVersion:
    """Follow parent links to the first version of the lineage (the starter)."""
    seen = {version.id}
    while version.parent_id is not None and version.parent_id not in seen:
        parent = db.session.get(ModelVersion, version.parent_id)
        if parent is None:
            break
        seen.add(parent.id)
        version = parent
    return version


def training_plan(cfg: dict, *, parent: ModelVersion, base: ModelVersion) -> tuple[ModelVersion, list, list]:
    """(init = reference version, loss types, loss weights) for the run's start setting."""
    sft = float(cfg.get("sft_weight") or 0.0)
    if cfg["start"] == "base":
        if sft > 0:
            return base, ["sigmoid", "sft"], [1.0, sft]
        return base, ["sigmoid"], [1.0]
    if cfg["start"] == "active":
        # Continuing from the last version needs the sft term, or iterated DPO displaces likelihood and collapses.
        return parent, ["sigmoid", "sft"], [1.0, sft or 1.0]
    raise ValueError(f"unknown start {cfg['start']!r}; use 'base' or 'active'")


def split_by_prompt(pairs: list[dict], *, holdout: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Hold out whole inputs, by a stable hash of the input: an input held out once is held out in every run.

    A fresh shuffle per run would let the parent have trained on the candidate's "held-out" inputs, and the gate
    would compare a model on its own training data against one that never saw it (measured: up to 11 of 13).
    """
    def rank(text: str) -> float:
        return int(hashlib.sha256(f"{seed}:{text}".encode()).hexdigest()[:12], 16) / 16**12

    inputs = sorted({p["input"] for p in pairs}, key=rank)
    held = {t for t in inputs if rank(t) < holdout}
    if len(inputs) >= 2 and holdout > 0:
        # Few inputs: still hold one out and still train on one, so the gate and the trainer both have data.
        held = (held or {inputs[0]}) - {inputs[-1]}
    return [p for p in pairs if p["input"] not in held], [p for p in pairs if p["input"] in held]


def evaluation_texts(train_pairs: list[dict], *, limit: int) -> list[str]:
    """Inputs for the generation check after the held-out ones: pool prompts it never trained on, then training inputs.

    Unseen inputs first: on the inputs it was just trained on, the sft term makes a model repeat its chosen answers,
    and the diversity measured there reads lower than what annotators will see on new prompts."""
    trained = list(dict.fromkeys(p["input"] for p in train_pairs))
    seen, unseen = set(trained), []
    # Streamed, not a NOT IN list: the training inputs can outnumber a database's bound parameters.
    for text in db.session.scalars(db.select(Prompt.text).order_by(Prompt.id).execution_options(yield_per=500)):
        if len(unseen) >= limit:
            break
        if text not in seen:
            unseen.append(text)
    return (unseen + trained)[:limit]


def error_summary(exc: BaseException) -> str:
    """The exception and the last frames it passed through, short enough for a table cell."""
    frames = traceback.extract_tb(exc.__traceback__)[-3:]
    where = " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(frames))
    return (f"{type(exc).__name__}: {exc}" + (f" (at {where})" if where else ""))[:2000]


class Progress:
    """Progress in the run row and, under RQ, in job.meta: called after every logging step."""

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


def _precision() -> dict:
    """bf16 or fp16 from the hardware: DPOConfig defaults to bf16 and refuses it on a CPU."""
    import torch

    if not torch.cuda.is_available():
        return {"bf16": False, "fp16": False, "use_cpu": True}
    bf16 = torch.cuda.is_bf16_supported()
    return {"bf16": bf16, "fp16": not bf16, "use_cpu": False}


def train_causal(*, init_path: str, pairs: list[dict], cfg: dict, loss_type: list, loss_weights: list, on_log):
    """DPO with TRL on a decoder-only model; returns (model to save, tokenizer, summary)."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    history: list[dict] = []

    class ProgressCallback(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "loss" not in logs:  # the final summary log has train_loss instead
                return
            acc = logs.get("rewards/accuracies")
            row = {"step": state.global_step, "loss": float(logs["loss"]),
                   "reward_accuracy": None if acc is None else float(acc)}
            history.append(row)
            if on_log is not None:
                on_log(state.global_step, state.max_steps, float(logs.get("epoch") or state.epoch or 0.0),
                       row["loss"], row["reward_accuracy"])

    tokenizer = AutoTokenizer.from_pretrained(init_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(init_path)
    peft_config, ref_model = None, None
    if cfg["lora"]:
        from peft import LoraConfig

        # With LoRA, TRL scores the reference by disabling the adapter: that is the init model, as intended.
        peft_config = LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["c_attn", "c_proj", "c_fc"],
                                 fan_in_fan_out=True, task_type="CAUSAL_LM")
    else:
        # An explicit reference, loaded from the same folder: TRL must never pick one itself.
        ref_model = AutoModelForCausalLM.from_pretrained(init_path)
    with tempfile.TemporaryDirectory(prefix="dpo-") as out_dir:
        args = DPOConfig(
            output_dir=out_dir, learning_rate=float(cfg["lr"]), beta=float(cfg["beta"]),
            num_train_epochs=float(cfg["epochs"]), per_device_train_batch_size=int(cfg["batch_size"]),
            max_length=int(cfg["max_length"]), loss_type=loss_type, loss_weights=loss_weights,
            gradient_checkpointing=False, report_to="none", save_strategy="no", logging_steps=1,
            disable_tqdm=True, seed=int(cfg["seed"]), dataloader_num_workers=0, **_precision(),
        )
        trainer = DPOTrainer(
            model=model, ref_model=ref_model, args=args, processing_class=tokenizer, peft_config=peft_config,
            train_dataset=Dataset.from_list([{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in pairs]),
            callbacks=[ProgressCallback()],
        )
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
    trained = trainer.accelerator.unwrap_model(trainer.model)
    if cfg["lora"]:
        trained = trained.merge_and_unload()
    trained.eval()
    return trained, tokenizer, _summary(history, seconds)


def train_seq2seq(*, init_path: str, pairs: list[dict], cfg: dict, loss_type: list, loss_weights: list, on_log):
    """DPO on an encoder-decoder model with our own loop (TRL dropped seq2seq DPO; see seq2seq_dpo.py)."""
    import torch
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    from worker.seq2seq_dpo import train_seq2seq_dpo

    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(init_path)
    model = AutoModelForSeq2SeqLM.from_pretrained(init_path).to(device)
    ref_model = AutoModelForSeq2SeqLM.from_pretrained(init_path).to(device)
    if cfg["lora"]:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, task_type="SEQ_2_SEQ_LM",
                                                 target_modules=["q", "k", "v", "o", "wi", "wo"]))
    sft_weight = loss_weights[loss_type.index("sft")] if "sft" in loss_type else 0.0
    started = time.perf_counter()
    out = train_seq2seq_dpo(
        model=model, ref_model=ref_model, tokenizer=tokenizer, pairs=pairs, beta=float(cfg["beta"]),
        lr=float(cfg["lr"]), epochs=int(cfg["epochs"]), batch_size=int(cfg["batch_size"]),
        max_length=int(cfg["max_length"]), sft_weight=float(sft_weight), seed=int(cfg["seed"]), on_log=on_log,
    )
    seconds = time.perf_counter() - started
    if cfg["lora"]:
        model = model.merge_and_unload()
    return model, tokenizer, _summary(out["history"], seconds)


def _summary(history: list[dict], seconds: float) -> dict:
    return {
        "steps": len(history),
        "loss_first": history[0]["loss"] if history else None,
        "loss_last": history[-1]["loss"] if history else None,
        "reward_accuracy_last": history[-1]["reward_accuracy"] if history else None,
        "seconds": round(seconds, 2),
        "history": history[-HISTORY_LIMIT:],
    }
