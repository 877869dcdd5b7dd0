"""DPO for encoder-decoder models (T5): the training loop, on the model core's scorer and losses.

Why this file exists: TRL >= 0.29 removed encoder-decoder support from DPOTrainer (the DPO refactor,
huggingface/trl PR #3906). With trl 1.16 a T5 trainer constructs and then fails in train() with
"You must specify exactly one of input_ids or inputs_embeds". The last TRL with seq2seq DPO is 0.28.0, and it
needs transformers <= 5.2.0, so pinning it would hold the whole project (serving, GPT-2 training) on old
versions. We keep current TRL for causal models and run the standard sigmoid DPO loss (app/lm/losses.py) here,
scoring with the same encoder and scorer as the gate (app/lm/scoring.py).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from app.lm.checkpoint import LoadedModel
from app.lm.losses import dpo_loss, sft_loss
from app.lm.scoring import score_batch

# on_log(step, total_steps, epoch, loss, reward_accuracy): the same progress signature as the causal path.
ProgressFn = Callable[[int, int, float, float, float], None]


def pair_logps(loaded: LoadedModel, pairs: list[dict], *, max_length: int):
    """(chosen logps, rejected logps, (chosen token counts, rejected token counts)): one batch holding every pair's
    chosen, then rejected."""
    prompts = [p["prompt"] for p in pairs] * 2
    completions = [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs]
    logps, counts = score_batch(loaded, prompts, completions, max_length=max_length)
    n = len(pairs)
    return logps[:n], logps[n:], (counts[:n], counts[n:])


def reference_logps(ref: LoadedModel, pairs: list[dict], *, batch_size: int, max_length: int) -> list[tuple]:
    """(chosen, rejected) log-probs of every pair under the frozen reference, computed once up front."""
    import torch

    ref.model.eval()
    for p in ref.model.parameters():
        p.requires_grad_(False)
    out: list[tuple] = []
    with torch.inference_mode():
        for start in range(0, len(pairs), batch_size):
            rc, rr, _ = pair_logps(ref, pairs[start : start + batch_size], max_length=max_length)
            out.extend(zip(rc.tolist(), rr.tolist(), strict=True))
    return out


def sum_shares(params, values: list[float]) -> list[float]:
    """Across the training processes: each parameter's gradient summed (each process's loss was its share of the
    batch's mean, so the sum is the whole batch's gradient), and the logged values likewise."""
    import torch
    from accelerate.utils import reduce

    for p in params:
        p.grad = reduce(p.grad if p.grad is not None else torch.zeros_like(p), reduction="sum")
    return reduce(torch.tensor(values), reduction="sum").tolist()


def train_seq2seq_dpo(*, model, ref_model, tokenizer, pairs: list[dict], beta: float = 0.1, lr: float = 1e-4,
                      epochs: int = 2, batch_size: int = 8, max_length: int = 128, sft_weight: float = 0.0,
                      seed: int = 0, divergence: str = "reverse_kl", loss: str = "sigmoid",
                      on_log: ProgressFn | None = None) -> dict:
    """Train `model` in place with DPO against a frozen `ref_model`; return a summary with the loss history."""
    import torch
    from accelerate import PartialState

    if not pairs:
        raise ValueError("no training pairs")
    for module in model.modules():
        # Dropout makes policy and reference disagree on identical weights; TRL disables it too.
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    policy = LoadedModel(model=model, tokenizer=tokenizer, is_seq2seq=True)
    ref = reference_logps(LoadedModel(model=ref_model, tokenizer=tokenizer, is_seq2seq=True), pairs,
                          batch_size=batch_size, max_length=max_length)
    device = next(model.parameters()).device
    # One process, unless launched on several (worker/distributed.py): then each takes its share of every batch
    # and Accelerate sums the shares' gradients, so the step is the one-process step on the whole batch.
    state = PartialState(cpu=device.type == "cpu")
    rank, world = state.process_index, state.num_processes
    torch.manual_seed(seed)
    rng = random.Random(seed)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=lr)
    total = math.ceil(len(pairs) / batch_size) * epochs
    history, step = [], 0
    for epoch in range(epochs):
        order = list(range(len(pairs)))
        rng.shuffle(order)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            mine = idx[rank::world]
            share = len(mine) / len(idx)  # 1.0 in one process: the loss is the batch's mean, as before
            values = [0.0, 0.0, 0.0]  # loss, reward accuracy, margin
            if mine:
                pc, pr, tokens = pair_logps(policy, [pairs[i] for i in mine], max_length=max_length)
                rc = torch.tensor([ref[i][0] for i in mine], device=device)
                rr = torch.tensor([ref[i][1] for i in mine], device=device)
                out = dpo_loss(pc, pr, rc, rr, beta, divergence, loss=loss, tokens=tokens)
                total_loss = out["loss"] + (sft_weight * sft_loss(pc, tokens[0]) if sft_weight > 0 else 0.0)
                (total_loss * share if world > 1 else total_loss).backward()
                values = [total_loss.item(), out["accuracy"], out["margin"]]
            if world > 1:
                values = sum_shares(params, [v * share for v in values])
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optim.step()
            optim.zero_grad()
            step += 1
            row = {"step": step, "loss": values[0], "reward_accuracy": values[1], "margin": values[2]}
            history.append(row)
            if on_log is not None:
                on_log(step, total, epoch + (start + len(idx)) / len(order), row["loss"], row["reward_accuracy"])
    model.eval()
    return {"steps": step, "history": history, "loss_first": history[0]["loss"], "loss_last": history[-1]["loss"]}
