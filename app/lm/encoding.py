"""The only prompt + completion encoder: what the starter build, DPO training and the gate all score.

Decoder-only models follow TRL 1.16's DPOTrainer exactly, so the gate scores the tokens TRL trained on: the end
token is appended to the completion as text, prompt + completion is tokenized as one string, and the completion
starts where that diverges from the tokenized prompt. Encoder-decoder models encode the prompt and the completion
separately; their tokenizer appends the end token. Labels are -100 on the prompt and on padding (taken from the
attention mask, never from the pad id, which a tokenizer may share with a real token).
"""

from __future__ import annotations


def completion_text(prompt: str, text: str) -> str:
    """A candidate as the completion of its prompt: after one space (TRL wants the prompt to be a token prefix, so
    the space goes on the completion), unless the prompt already ends in whitespace, as a chat template's generation
    prompt does with its newline."""
    return text if prompt[-1:].isspace() else " " + text


def common_prefix_length(a: list[int], b: list[int]) -> int:
    """How many leading ids two sequences share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def causal_ids(tokenizer, prompt: str, completion: str) -> tuple[list[int], list[int]]:
    """(prompt ids, completion ids ending with the end token) as TRL's DPOTrainer tokenizes them."""
    eos = tokenizer.eos_token
    full = tokenizer(prompt + completion + ("" if completion.endswith(eos) else eos))["input_ids"]
    prompt_ids = tokenizer(prompt)["input_ids"]
    n = common_prefix_length(prompt_ids, full)
    return full[:n], full[n:]


def encode_completions(tokenizer, prompts: list[str], completions: list[str], *, is_seq2seq: bool,
                       max_length: int | None = None) -> dict:
    """One padded batch (input_ids, attention_mask, labels) with the loss on each completion only.

    max_length truncates the end (TRL's keep_start): the prompt + completion for a decoder-only model, each side
    for an encoder-decoder model.
    """
    import torch

    if is_seq2seq:
        trunc = {"truncation": max_length is not None, "max_length": max_length}
        enc = tokenizer(prompts, padding=True, return_tensors="pt", **trunc)
        lab = tokenizer(completions, padding=True, return_tensors="pt", **trunc)
        labels = lab["input_ids"].masked_fill(lab["attention_mask"] == 0, -100)
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"], "labels": labels}
    seqs, masks = [], []
    for prompt, completion in zip(prompts, completions, strict=True):
        p, c = causal_ids(tokenizer, prompt, completion)
        seqs.append((p + c)[:max_length])
        masks.append(([-100] * len(p) + c)[:max_length])
    width = max(len(s) for s in seqs)
    pad = tokenizer.pad_token_id
    return {
        "input_ids": torch.tensor([s + [pad] * (width - len(s)) for s in seqs]),
        "attention_mask": torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs]),
        "labels": torch.tensor([m + [-100] * (width - len(m)) for m in masks]),
    }
