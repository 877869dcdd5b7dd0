"""DPO for encoder-decoder models (T5) in plain torch.

Why this file exists: TRL >= 0.29 removed encoder-decoder support from DPOTrainer (the DPO refactor,
huggingface/trl PR #3906). With trl 1.16 a T5 trainer constructs and then fails in train() with
"You must specify exactly one of input_ids or inputs_embeds". The last TRL with seq2seq DPO is 0.28.0, and it
needs transformers <= 5.2.0, so pinning it would hold the whole project (serving, GPT-2 training) on old
versions. We keep current TRL for causal models and write the standard sigmoid DPO loss here instead: it is
small, and it is tested against hand-computed values (tests/test_seq2seq_dpo.py).

The loss, per pair, with summed completion log-probs under the policy (p) and the reference (r):
    -log sigmoid(beta * ((p_chosen - r_chosen) - (p_rejected - r_rejected)))
plus, optionally, sft_weight times the chosen completion's negative log-likelihood per token (TRL's "sft"
loss term), which keeps the chosen text likely and counters likelihood displacement (see STACK.md).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import torch
import torch.nn.functional as F

# on_log(step, total_steps, epoch, loss, reward_accuracy): the same progress signature as the causal path.
ProgressFn = Callable[[int, int, float, float, float], None]


def sequence_logps(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probs of each row's completion (its labels) and the number of tokens summed.

    batch: input_ids, attention_mask (the encoder side) and labels (the completion; -100 marks padding).
    """
    labels = batch["labels"]
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels).logits
    mask = labels != -100
    safe = labels.masked_fill(~mask, 0)
    token_logps = torch.gather(logits.float().log_softmax(-1), 2, safe.unsqueeze(-1)).squeeze(-1)
    return (token_logps * mask).sum(-1), mask.sum(-1)


def dpo_loss(
    policy_chosen: torch.Tensor,
    policy_rejected: torch.Tensor,
    ref_chosen: torch.Tensor,
    ref_rejected: torch.Tensor,
    beta: float,
) -> dict:
    """The sigmoid DPO loss (mean over pairs) with the implicit rewards, their accuracy and mean margin."""
    chosen_rewards = beta * (policy_chosen - ref_chosen)
    rejected_rewards = beta * (policy_rejected - ref_rejected)
    margins = chosen_rewards - rejected_rewards
    return {
        "loss": -F.logsigmoid(margins).mean(),
        "chosen_rewards": chosen_rewards.detach(),
        "rejected_rewards": rejected_rewards.detach(),
        "accuracy": (margins > 0).float().mean().item(),
        "margin": margins.mean().item(),
    }


def sft_loss(chosen_logps: torch.Tensor, chosen_tokens: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of the chosen completions, normalised per token, averaged over pairs."""
    return -(chosen_logps / chosen_tokens.clamp(min=1)).mean()


def encode_pairs(tokenizer, pairs: list[dict], *, max_length: int, device=None) -> dict:
    """One batch holding every pair twice: chosen rows first, then rejected rows (one forward pass for both)."""
    prompts = [p["prompt"] for p in pairs] * 2
    completions = [p["chosen"] for p in pairs] + [p["rejected"] for p in pairs]
    enc = tokenizer(prompts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    labels = tokenizer(completions, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    label_ids = labels["input_ids"].masked_fill(labels["attention_mask"] == 0, -100)
    batch = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": label_ids}
    return {k: v.to(device) for k, v in batch.items()} if device is not None else batch


def pair_logps(model, tokenizer, pairs: list[dict], *, max_length: int, device=None):
    """(chosen logps, rejected logps, chosen token counts) for a list of pairs."""
    batch = encode_pairs(tokenizer, pairs, max_length=max_length, device=device)
    logps, counts = sequence_logps(model, batch)
    n = len(pairs)
    return logps[:n], logps[n:], counts[:n]


def train_seq2seq_dpo(
    *,
    model,
    ref_model,
    tokenizer,
    pairs: list[dict],
    beta: float = 0.1,
    lr: float = 1e-4,
    epochs: int = 2,
    batch_size: int = 8,
    max_length: int = 128,
    sft_weight: float = 0.0,
    seed: int = 0,
    on_log: ProgressFn | None = None,
) -> dict:
    """Train `model` in place with DPO against a frozen `ref_model`; return a summary with the loss history.

    Reference log-probs are computed once up front (the reference never changes), so each step runs only the
    policy forward and backward.
    """
    if not pairs:
        raise ValueError("no training pairs")
    device = next(model.parameters()).device
    for module in model.modules():
        # Dropout makes policy and reference disagree on identical weights; TRL disables it too.
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    ref_model.eval()
    for p in ref_model.parameters():
        p.requires_grad_(False)
    with torch.inference_mode():
        ref = {}
        for start in range(0, len(pairs), batch_size):
            chunk = pairs[start : start + batch_size]
            rc, rr, _ = pair_logps(ref_model, tokenizer, chunk, max_length=max_length, device=device)
            for i, (c, r) in enumerate(zip(rc.tolist(), rr.tolist(), strict=True)):
                ref[start + i] = (c, r)

    torch.manual_seed(seed)
    rng = random.Random(seed)
    model.train()
    optim = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    steps_per_epoch = math.ceil(len(pairs) / batch_size)
    total = steps_per_epoch * epochs
    history, step = [], 0
    for epoch in range(epochs):
        order = list(range(len(pairs)))
        rng.shuffle(order)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            pc, pr, n_chosen = pair_logps(model, tokenizer, [pairs[i] for i in idx], max_length=max_length,
                                          device=device)
            rc = torch.tensor([ref[i][0] for i in idx], device=device)
            rr = torch.tensor([ref[i][1] for i in idx], device=device)
            out = dpo_loss(pc, pr, rc, rr, beta)
            loss = out["loss"]
            if sft_weight > 0:
                loss = loss + sft_weight * sft_loss(pc, n_chosen)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optim.step()
            optim.zero_grad()
            step += 1
            row = {"step": step, "loss": loss.item(), "reward_accuracy": out["accuracy"], "margin": out["margin"]}
            history.append(row)
            if on_log is not None:
                on_log(step, total, epoch + (start + len(idx)) / len(order), row["loss"], row["reward_accuracy"])
    model.eval()
    return {"steps": step, "history": history, "loss_first": history[0]["loss"], "loss_last": history[-1]["loss"]}
