"""Load a checkpoint (causal or seq2seq) and sample candidates in one batched call."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_TEMPLATE = "{input}"
# Sampling seeds torch's global RNG, so generations in one process run one at a time;
# that keeps every stored seed reproducible when the prefetch thread and a request overlap.
_GENERATE_LOCK = threading.Lock()


@dataclass
class LoadedModel:
    """A model ready to sample from, plus what is needed to format its prompts."""

    model: Any
    tokenizer: Any
    is_seq2seq: bool
    prompt_template: str = DEFAULT_TEMPLATE
    version_id: int | None = None
    max_positions: int | None = None
    manifest: dict = field(default_factory=dict)

    def format_prompt(self, text: str) -> str:
        """Turn an annotator's input into the exact text the model sees."""
        return self.prompt_template.replace("{input}", text)


def read_manifest(path: str | Path) -> dict:
    """Return a checkpoint's manifest.json, or {} for a plain HF folder or hub id."""
    manifest = Path(path) / "manifest.json"
    if manifest.is_file():
        return json.loads(manifest.read_text())
    return {}


def load_checkpoint(path: str, *, device: str | None = None, version_id: int | None = None) -> LoadedModel:
    """Load any local folder or hub id with the real Auto* classes."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

    config = AutoConfig.from_pretrained(path)
    is_seq2seq = bool(getattr(config, "is_encoder_decoder", False))
    cls = AutoModelForSeq2SeqLM if is_seq2seq else AutoModelForCausalLM
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = cls.from_pretrained(path).to(device).eval()
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    manifest = read_manifest(path)
    max_positions = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        is_seq2seq=is_seq2seq,
        prompt_template=manifest.get("prompt_template", DEFAULT_TEMPLATE),
        version_id=version_id,
        max_positions=max_positions,
        manifest=manifest,
    )


class InputTooLong(ValueError):
    """The formatted prompt does not fit the model's input limit."""


def _generate(loaded: LoadedModel, enc: dict, n: int, *, temperature: float, top_p: float, max_new_tokens: int):
    import torch

    tok = loaded.tokenizer
    with torch.inference_mode():
        out = loaded.model.generate(
            **enc,
            do_sample=True,
            num_return_sequences=n,
            temperature=temperature,
            top_p=top_p,
            max_new_tokens=max_new_tokens,
            pad_token_id=tok.pad_token_id,
        )
    if not loaded.is_seq2seq:
        # A decoder-only model echoes the prompt; keep only what it added.
        out = out[:, enc["input_ids"].shape[1] :]
    return [tok.decode(row, skip_special_tokens=True).strip() for row in out]


def sample_candidates(
    loaded: LoadedModel,
    *,
    model_prompt: str,
    n: int = 3,
    temperature: float = 1.0,
    top_p: float = 0.95,
    max_new_tokens: int = 40,
    max_input_tokens: int = 256,
    seed: int = 0,
    dedup_tries: int = 3,
) -> tuple[list[str], list[str]]:
    """Sample n distinct candidates in one generate call; resample duplicates a bounded number of times.

    Returns (candidates, raw) where raw is the first call's samples before any resampling,
    so diversity can be measured honestly.
    """
    import torch

    tok = loaded.tokenizer
    limit = max_input_tokens
    if loaded.max_positions and not loaded.is_seq2seq:
        limit = min(limit, loaded.max_positions - max_new_tokens)
    enc = tok(model_prompt, return_tensors="pt")
    if enc["input_ids"].shape[1] > limit:
        raise InputTooLong(f"input is {enc['input_ids'].shape[1]} tokens; the limit is {limit}")
    device = loaded.model.device
    enc = {k: v.to(device) for k, v in enc.items()}
    kwargs = dict(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens)
    with _GENERATE_LOCK:
        torch.manual_seed(seed)
        raw = _generate(loaded, enc, n, **kwargs)
        unique: list[str] = []
        for text in raw:
            if text not in unique:
                unique.append(text)
        for _ in range(dedup_tries):
            if len(unique) >= n:
                break
            for text in _generate(loaded, enc, n, **kwargs):
                if text not in unique and len(unique) < n:
                    unique.append(text)
    # Bounded tries: if the model really only knows fewer answers, fill with repeats
    # rather than fail the request; the raw list records the truth.
    while len(unique) < n:
        unique.append(raw[len(unique) % len(raw)])
    return unique, raw
