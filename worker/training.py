"""Train one DPO policy: TRL's DPOTrainer for decoder-only models, our own loop for encoder-decoder ones."""

from __future__ import annotations

import os
import tempfile
import time

from app.lm.checkpoint import load_tokenizer
from app.lm.device import pick_device, training_precision
from app.training.spec import TrainingSpec

HISTORY_LIMIT = 500  # progress rows kept on the run (a long run keeps its latest steps)


def lora_config(model, *, task_type: str):
    """One LoRA setting for every architecture: PEFT picks the target modules where it knows the model type."""
    from peft import LoraConfig
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as KNOWN

    # PEFT knows GPT-2 and T5 (and sets fan_in_fan_out itself for GPT-2's Conv1D); for a type it does not know,
    # every linear layer, rather than failing with "Please specify target_modules".
    targets = None if model.config.model_type in KNOWN else "all-linear"
    return LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=targets, task_type=task_type)


def summarize(history: list[dict], seconds: float) -> dict:
    """The loss curve's ends and the time, for the run and the version."""
    return {
        "steps": len(history),
        "loss_first": history[0]["loss"] if history else None,
        "loss_last": history[-1]["loss"] if history else None,
        "reward_accuracy_last": history[-1]["reward_accuracy"] if history else None,
        "seconds": round(seconds, 2),
        "history": history[-HISTORY_LIMIT:],
    }


def progress_callback(history: list[dict], on_log):
    """A TrainerCallback that records each logged step and reports it."""
    from transformers import TrainerCallback

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

    return ProgressCallback()


def train_causal(*, init_path: str, pairs: list[dict], spec: TrainingSpec, loss_type: list, loss_weights: list,
                 on_log=None):
    """DPO (or KTO, on KTO's rows: loss_type ["kto"]) with TRL on a decoder-only model; returns (model to save,
    tokenizer, summary)."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import DPOConfig, DPOTrainer

    tokenizer = load_tokenizer(init_path)
    model = AutoModelForCausalLM.from_pretrained(init_path)
    # With LoRA, TRL scores the reference by disabling the adapter: that is the init model, as intended. Without it,
    # an explicit reference loaded from the same folder: TRL must never pick one itself.
    peft_config = lora_config(model, task_type="CAUSAL_LM") if spec.lora else None
    ref_model = None if spec.lora else AutoModelForCausalLM.from_pretrained(init_path)
    history: list[dict] = []
    # On several processes (worker/distributed.py) each takes its share of a step's pairs: a step is still
    # spec.batch_size pairs, as in one process.
    per_device = max(1, spec.batch_size // int(os.environ.get("WORLD_SIZE", "1")))
    common = dict(learning_rate=spec.lr, beta=spec.beta, num_train_epochs=float(spec.epochs),
                  per_device_train_batch_size=per_device, max_length=spec.max_length, gradient_checkpointing=False,
                  report_to="none", save_strategy="no", logging_steps=1, disable_tqdm=True, seed=spec.seed,
                  dataloader_num_workers=0, **training_precision())
    with tempfile.TemporaryDirectory(prefix="dpo-") as out_dir:
        if loss_type == ["kto"]:
            trainer = kto_trainer(model=model, ref_model=ref_model, tokenizer=tokenizer, peft_config=peft_config,
                                  rows=pairs, args=dict(common, output_dir=out_dir), seed=spec.seed)
        else:
            args = DPOConfig(output_dir=out_dir, loss_type=loss_type, loss_weights=loss_weights,
                             f_divergence_type=spec.divergence, **common)
            trainer = DPOTrainer(
                model=model, ref_model=ref_model, args=args, processing_class=tokenizer, peft_config=peft_config,
                train_dataset=Dataset.from_list([{k: p[k] for k in ("prompt", "chosen", "rejected")} for p in pairs]),
            )
        trainer.add_callback(progress_callback(history, on_log))
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
    trained = trainer.accelerator.unwrap_model(trainer.model)
    if spec.lora:
        trained = trained.merge_and_unload()
    trained.eval()
    return trained, tokenizer, summarize(history, seconds)


def kto_trainer(*, model, ref_model, tokenizer, peft_config, rows: list[dict], args: dict, seed: int):
    """TRL's KTOTrainer on {prompt, completion, label} rows, shuffled once by the seed (KTO reads them in order: its
    KL term pairs each row with its neighbour's completion), good answers weighted to balance the bad ones."""
    import random

    from datasets import Dataset
    from trl import KTOConfig, KTOTrainer

    if args["per_device_train_batch_size"] < 2:
        raise ValueError("TRAIN_LOSS=kto needs at least 2 answers per process and step (TRAIN_BATCH_SIZE)")
    good = sum(r["label"] for r in rows)
    if not good or good == len(rows):
        raise ValueError(f"TRAIN_LOSS=kto needs good and bad answers; this run has {good} good of {len(rows)}")
    rows = [{k: r[k] for k in ("prompt", "completion", "label")} for r in rows]
    random.Random(seed).shuffle(rows)
    # TRL's advice: desirable_weight * good / (undesirable_weight * bad) in [1, 4/3]; a click gives 1 good, 2 bad.
    config = KTOConfig(desirable_weight=(len(rows) - good) / good, undesirable_weight=1.0, **args)
    return KTOTrainer(model=model, ref_model=ref_model, args=config, processing_class=tokenizer,
                       peft_config=peft_config, train_dataset=Dataset.from_list(rows))


def train_seq2seq(*, init_path: str, pairs: list[dict], spec: TrainingSpec, loss_type: list, loss_weights: list,
                  on_log=None):
    """DPO on an encoder-decoder model with our own loop (TRL dropped seq2seq DPO; see seq2seq_dpo.py)."""
    from transformers import AutoModelForSeq2SeqLM

    from worker.seq2seq_dpo import train_seq2seq_dpo

    device = pick_device()
    tokenizer = load_tokenizer(init_path)
    model = AutoModelForSeq2SeqLM.from_pretrained(init_path).to(device)
    ref_model = AutoModelForSeq2SeqLM.from_pretrained(init_path).to(device)
    if spec.lora:
        from peft import get_peft_model

        model = get_peft_model(model, lora_config(model, task_type="SEQ_2_SEQ_LM"))
    if loss_type == ["kto"]:
        raise ValueError("TRAIN_LOSS=kto trains decoder-only models (TRL's KTOTrainer); an encoder-decoder model "
                         "such as T5 trains with sigmoid or ipo")
    sft_weight = loss_weights[loss_type.index("sft")] if "sft" in loss_type else 0.0
    preference_loss = next(t for t in loss_type if t != "sft")
    started = time.perf_counter()
    out = train_seq2seq_dpo(
        model=model, ref_model=ref_model, tokenizer=tokenizer, pairs=pairs, beta=spec.beta, lr=spec.lr,
        epochs=spec.epochs, batch_size=spec.batch_size, max_length=spec.max_length, sft_weight=float(sft_weight),
        seed=spec.seed, divergence=spec.divergence, loss=preference_loss, on_log=on_log,
    )
    seconds = time.perf_counter() - started
    if spec.lora:
        model = model.merge_and_unload()
    return model, tokenizer, summarize(out["history"], seconds)


def trainer_for(arch: str):
    """The training step of an architecture: our loop for encoder-decoder models, TRL's trainer for the rest."""
    return train_seq2seq if arch == "seq2seq" else train_causal
