"""Load any checkpoint (a version folder, a local HF folder or a hub id) ready to sample and score."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_TEMPLATE = "{input}"
# How an input becomes the model's prompt: "chat", the tokenizer's chat template (the input as the user's message after
# the task's system prompt); "template", the manifest's {input} template. A manifest may name one; else a tokenizer
# with a chat template means "chat".
PROMPT_FORMATS = ("chat", "template")


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
    prompt_format: str = "template"

    def format_prompt(self, text: str, *, system_prompt: str = "") -> str:
        """Turn an annotator's input into the exact text the model sees: sampling, training and the gate all use it."""
        if self.prompt_format != "chat":
            return self.prompt_template.replace("{input}", text)
        return render_chat(self.tokenizer, text, system_prompt=system_prompt)


def render_chat(tokenizer, text: str, *, system_prompt: str = "") -> str:
    """The input as a user message (after the system prompt, if any), rendered with the generation prompt.

    A template that writes the begin-of-text token itself would get a second one from the tokenizer when the text is
    encoded (Llama-style): it is dropped here, so every consumer encodes the one the tokenizer adds."""
    messages = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [
        {"role": "user", "content": text}]
    try:
        rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception:  # noqa: BLE001 - jinja's TemplateError, raised by the template itself
        if not system_prompt:
            raise
        # Gemma's and older Mistral templates refuse a system message: the instructions lead the user's turn, as
        # those models' own cards advise.
        rendered = tokenizer.apply_chat_template([{"role": "user", "content": f"{system_prompt}\n\n{text}"}],
                                                 tokenize=False, add_generation_prompt=True)
    bos = tokenizer.bos_token
    if bos and rendered.startswith(bos) and tokenizer("x")["input_ids"][:1] == [tokenizer.bos_token_id]:
        rendered = rendered[len(bos):]
    return rendered


def end_of_turn(tokenizer) -> str | None:
    """The special token a chat template writes right after an assistant's message (ChatML's <|im_end|>, Llama 3's
    <|eot_id|>, Gemma's <end_of_turn>), or None when it writes none."""
    marker = "XYZZY-prefloop"
    try:
        rendered = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"},
                                                  {"role": "assistant", "content": marker}], tokenize=False)
    except Exception:  # noqa: BLE001 - a template with its own rules (roles, order): no end token to learn
        return None
    if marker not in rendered:  # a template that drops the assistant's text: nothing after it to read
        return None
    after = rendered.split(marker, 1)[1]
    ids = tokenizer(after, add_special_tokens=False)["input_ids"] if after else []
    special = set(tokenizer.all_special_ids) | {int(i) for i in getattr(tokenizer, "added_tokens_decoder", {})}
    return tokenizer.convert_ids_to_tokens(ids[0]) if ids and ids[0] in special else None


def prompt_format(manifest: dict, tokenizer) -> str:
    """The manifest's prompt format if it names one, else "chat" where the tokenizer has a chat template."""
    forced = manifest.get("prompt_format")
    if forced == "chat" and not getattr(tokenizer, "chat_template", None):
        raise ValueError("the manifest asks for chat prompts, but the tokenizer has no chat template")
    if forced in PROMPT_FORMATS:
        return forced
    return "chat" if getattr(tokenizer, "chat_template", None) else "template"


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
    tokenizer = load_tokenizer(path)
    return LoadedModel(
        model=model,
        tokenizer=tokenizer,
        is_seq2seq=cls is AutoModelForSeq2SeqLM,
        prompt_template=manifest.get("prompt_template", DEFAULT_TEMPLATE),
        version_id=version_id,
        max_positions=getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None),
        manifest=manifest,
        prompt_format=prompt_format(manifest, tokenizer),
    )
