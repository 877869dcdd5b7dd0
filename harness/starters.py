"""Starters put into a model store as versions: copied into a folder, or published into a bucket."""

from __future__ import annotations

import shutil
from pathlib import Path


def install_starter(app, path: Path) -> int:
    """Copy a starter into the app's store as version 1 and activate it."""
    from app.lm.checkpoint import read_manifest
    from app.versions.registry import activate_version, register_version

    store = Path(app.config["MODEL_STORE"])
    store.mkdir(parents=True, exist_ok=True)
    dest = store / "1"
    shutil.copytree(path, dest)
    with app.app_context():
        register_version(number=1, path=dest, manifest=read_manifest(dest))
        activate_version(version_id=1, actor="test", reason="starter")
    return 1


def checkpoint_copier(source: Path):
    """A save() for publish_checkpoint that copies a checkpoint folder's files (its manifest is written anew) and
    carries over what serving needs from the old manifest."""
    from app.lm.checkpoint import read_manifest

    def save(tmp: Path) -> dict:
        for f in Path(source).iterdir():
            if f.is_file() and f.name != "manifest.json":
                shutil.copy(f, tmp / f.name)
        return {k: v for k, v in read_manifest(Path(source)).items() if k in ("prompt_template", "arch", "base_model")}

    return save


def publish_starter(app, path: Path) -> int:
    """Publish a starter into the app's bucket store (s3://) as a new version, register and activate it."""
    from app.lm.checkpoint import read_manifest
    from app.versions.registry import activate_version, register_version
    from app.versions.store import local_copy
    from worker.checkpoints import publish_checkpoint

    with app.app_context():
        number, location = publish_checkpoint(store=app.config["MODEL_STORE"], save=checkpoint_copier(path),
                                              manifest={"kind": "starter", "parent_version": None})
        register_version(number=number, path=location, manifest=read_manifest(local_copy(location)))
        activate_version(version_id=number, actor="test", reason="starter")
    return number


# ChatML, as Qwen and SmolLM write it: each message between <|im_start|>role and <|im_end|>, then the assistant's cue.
CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + "
          "'<|im_end|>' + '\\n' }}{% endfor %}"
          "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")


def chat_checkpoint(source: Path, dest: Path) -> Path:
    """A chat model made from a starter: ChatML's two special tokens added, <|im_end|> as the tokenizer's end token
    (as chat models ship it), a ChatML chat template, and no manifest (so it is imported as any hub model is).

    The generation config keeps the old end token, so sampling must take the tokenizer's as an end token too."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.eos_token = "<|im_end|>"
    tokenizer.chat_template = CHATML
    model = AutoModelForCausalLM.from_pretrained(source)
    model.resize_token_embeddings(len(tokenizer))
    dest.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    return dest
