"""Load any checkpoint (a version folder, a local HF folder or a hub id) ready to sample and score."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_TEMPLATE = "{input}"


@dataclass
class LoadedModel:
    """A model with its tokenizer, its kind, and what is needed to format its prompts."""

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


def ensure_pad_token(tokenizer):
    """Batches need a pad token; GPT-2 checkpoints from the hub have none, so pad with the end token."""
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_tokenizer(path: str):
    """The checkpoint's tokenizer, with a pad token."""
    from transformers import AutoTokenizer

    return ensure_pad_token(AutoTokenizer.from_pretrained(path))


def model_class(path: str):
    """AutoModelForSeq2SeqLM for an encoder-decoder config, else AutoModelForCausalLM."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM

    config = AutoConfig.from_pretrained(path)
    return AutoModelForSeq2SeqLM if getattr(config, "is_encoder_decoder", False) else AutoModelForCausalLM


def load_checkpoint(path: str, *, device: str | None = None, version_id: int | None = None) -> LoadedModel:
    """Load any local folder or hub id with the real Auto* classes, in eval mode, on `device` (default: CUDA if any)."""
    from transformers import AutoModelForSeq2SeqLM

    from app.lm.device import pick_device

    cls = model_class(path)
    model = cls.from_pretrained(path).to(device or pick_device()).eval()
    config = model.config
    manifest = read_manifest(path)
    return LoadedModel(
        model=model,
        tokenizer=load_tokenizer(path),
        is_seq2seq=cls is AutoModelForSeq2SeqLM,
        prompt_template=manifest.get("prompt_template", DEFAULT_TEMPLATE),
        version_id=version_id,
        max_positions=getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None),
        manifest=manifest,
    )
