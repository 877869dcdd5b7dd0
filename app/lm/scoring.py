"""The only completion log-prob scorer, for decoder-only and encoder-decoder models alike."""

from __future__ import annotations

from app.lm.checkpoint import LoadedModel
from app.lm.encoding import encode_completions


def sequence_logps(model, batch: dict, *, is_seq2seq: bool):
    """(summed log-prob of each row's labelled tokens, their count) as tensors; differentiable for training."""
    labels = batch["labels"]
    if is_seq2seq:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels).logits
        targets = labels
    else:
        # Position t predicts token t+1.
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        targets = labels[:, 1:]
    mask = targets != -100
    token_logps = logits.float().log_softmax(-1).gather(2, targets.masked_fill(~mask, 0).unsqueeze(-1)).squeeze(-1)
    return (token_logps * mask).sum(-1), mask.sum(-1)


def score_batch(loaded: LoadedModel, prompts: list[str], completions: list[str], *, max_length: int | None = None):
    """sequence_logps of one batch of (prompt, completion) rows on the model's device, with gradients."""
    limit = max_length or (None if loaded.is_seq2seq else loaded.max_positions)
    batch = encode_completions(loaded.tokenizer, prompts, completions, is_seq2seq=loaded.is_seq2seq,
                               max_length=limit)
    device = next(loaded.model.parameters()).device
    return sequence_logps(loaded.model, {k: v.to(device) for k, v in batch.items()}, is_seq2seq=loaded.is_seq2seq)


def completion_logps(loaded: LoadedModel, prompts: list[str], completions: list[str], *,
                     max_length: int | None = None, batch_size: int = 16) -> tuple[list[float], list[int]]:
    """Summed log-prob of each completion (plus its end token) given its prompt, and the token counts."""
    import torch

    sums: list[float] = []
    counts: list[int] = []
    with torch.inference_mode():
        for start in range(0, len(prompts), batch_size):
            logps, n = score_batch(loaded, prompts[start : start + batch_size],
                                   completions[start : start + batch_size], max_length=max_length)
            sums.extend(logps.tolist())
            counts.extend(n.tolist())
    return sums, counts
