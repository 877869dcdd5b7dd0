"""Sample candidates: one batched generate call for many prompts, duplicates resampled a bounded number of times."""

from __future__ import annotations

import threading

from app.lm.checkpoint import LoadedModel

# Sampling seeds torch's global RNG, so generations in one process run one at a time: that keeps every stored seed
# reproducible where two threads of one process sample at once (a threaded server, or the gate's caller).
_GENERATE_LOCK = threading.Lock()


class InputTooLong(ValueError):
    """The formatted prompt does not fit the model's input limit."""


def _generate(loaded: LoadedModel, enc: dict, n: int, *, temperature: float, top_p: float, max_new_tokens: int,
              min_p: float = 0.0):
    """n samples per row of enc, as one list of n-long lists."""
    import torch

    tok = loaded.tokenizer
    with torch.inference_mode():
        out = loaded.model.generate(
            **enc,
            do_sample=True,
            num_return_sequences=n,
            temperature=temperature,
            top_p=top_p,
            min_p=min_p or None,  # 0 is off: transformers then adds no min-p filter
            max_new_tokens=max_new_tokens,
            pad_token_id=tok.pad_token_id,
        )
    if not loaded.is_seq2seq:
        # A decoder-only model echoes the (left-padded) prompt; keep only what it added.
        out = out[:, enc["input_ids"].shape[1] :]
    texts = [tok.decode(row, skip_special_tokens=True).strip() for row in out]
    return [texts[i : i + n] for i in range(0, len(texts), n)]


def _encode(loaded: LoadedModel, prompts: list[str], *, max_new_tokens: int, max_input_tokens: int) -> dict:
    """Tokenize prompts as one padded batch, refusing any that does not fit the model."""
    tok = loaded.tokenizer
    limit = max_input_tokens
    if loaded.max_positions and not loaded.is_seq2seq:
        limit = min(limit, loaded.max_positions - max_new_tokens)
    # Left padding for a decoder-only model, so every row's next token follows its own prompt directly.
    enc = tok(prompts, return_tensors="pt", padding=True, padding_side="right" if loaded.is_seq2seq else "left")
    longest = int(enc["attention_mask"].sum(dim=1).max())
    if longest > limit:
        raise InputTooLong(f"input is {longest} tokens; the limit is {limit}")
    return {k: v.to(loaded.model.device) for k, v in enc.items()}


def sample_batch(
    loaded: LoadedModel,
    *,
    model_prompts: list[str],
    n: int = 3,
    temperature: float = 1.0,
    top_p: float = 0.95,
    min_p: float = 0.0,
    max_new_tokens: int = 40,
    max_input_tokens: int = 256,
    seed: int = 0,
    dedup_tries: int = 3,
) -> list[tuple[list[str], list[str]]]:
    """Sample n candidates for every prompt in one generate call; resample duplicates a bounded number of times.

    Returns one (candidates, raw) per prompt, where raw is the first call's samples before any resampling,
    so diversity can be measured honestly.
    """
    import torch

    kwargs = dict(temperature=temperature, top_p=top_p, min_p=min_p, max_new_tokens=max_new_tokens)
    enc = _encode(loaded, model_prompts, max_new_tokens=max_new_tokens, max_input_tokens=max_input_tokens)
    with _GENERATE_LOCK:
        torch.manual_seed(seed)
        raws = _generate(loaded, enc, n, **kwargs)
        uniques = [list(dict.fromkeys(raw)) for raw in raws]
        for _ in range(dedup_tries):
            short = [i for i, unique in enumerate(uniques) if len(unique) < n]
            if not short:
                break
            # Only the prompts that still lack distinct candidates go round again, together.
            again = _generate(loaded, {k: v[short] for k, v in enc.items()}, n, **kwargs)
            for i, texts in zip(short, again, strict=True):
                for text in texts:
                    if text not in uniques[i] and len(uniques[i]) < n:
                        uniques[i].append(text)
    results = []
    for unique, raw in zip(uniques, raws, strict=True):
        # Bounded tries: if the model really only knows fewer answers, fill with repeats
        # rather than fail the request; the raw list records the truth.
        while len(unique) < n:
            unique.append(raw[len(unique) % len(raw)])
        results.append((unique, raw))
    return results


def sample_candidates(loaded: LoadedModel, *, model_prompt: str, **settings) -> tuple[list[str], list[str]]:
    """Sample the candidates of one prompt (see sample_batch)."""
    return sample_batch(loaded, model_prompts=[model_prompt], **settings)[0]
