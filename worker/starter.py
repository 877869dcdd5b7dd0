"""Build the project's own starter model: corpus, tokenizer, tiny GPT-2 or T5, brief SFT."""

from __future__ import annotations

import json
import random
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from app.lm.encoding import encode_completions
from worker.corpus import PROMPT_TEMPLATE, corpus_hash, make_corpus

# The committed default starters, one folder per arch (a published version folder, manifest and digests included):
# training one takes longer than a first `make run` should (docs/BENCHMARKS.md), so the store is seeded from here
# when the recipe still matches. `python -m worker starter-model --rebuild --write-prebuilt` makes them again.
PREBUILT = Path(__file__).resolve().parent.parent / "models" / "prebuilt"


@dataclass
class StarterConfig:
    """Size and schedule of the starter; `tiny` is for tests."""

    arch: str = "gpt2"  # gpt2 | t5
    layers: int = 4
    dim: int = 192
    heads: int = 4
    # A small, nearly byte-level vocabulary: a word the starter never saw is then made of pieces it copies well
    # (GPT-2 copy trial: 59.8% of unseen content words kept at vocabulary 300, 32.0% at 400, 17.5% at 1,000).
    vocab: int = 300
    steps: int | None = None  # None: see __post_init__
    batch_size: int = 32
    lr: float | None = None
    corpus_size: int = 30000
    seed: int = 0

    def __post_init__(self) -> None:
        # Copying unseen words is learnt late: GPT-2 kept 75.8% of unseen content words at 1,500 steps and 79.4%
        # at 3,000 (samples keeping all of them: 61.8% -> 71.2%). T5 copies through cross-attention, which learns
        # slower still (0.7% kept at 1,500 steps, 10.8% at 3,000, 68.6% at 6,000), and at the GPT-2 learning rate
        # it garbled its copies.
        if self.steps is None:
            self.steps = 3000 if self.arch == "gpt2" else 6000
        if self.lr is None:
            self.lr = 5e-4 if self.arch == "t5" else 2e-3

    @classmethod
    def tiny(cls, arch: str = "gpt2", seed: int = 0) -> StarterConfig:
        """A model that builds in seconds: enough to exercise every code path."""
        return cls(arch=arch, layers=2, dim=64, heads=2, vocab=400, steps=120, batch_size=32, lr=2e-3,
                   corpus_size=1500, seed=seed)


def train_tokenizer(texts: list[str], *, arch: str, vocab: int):
    """Train a byte-level BPE tokenizer and wrap it for transformers."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    if arch == "t5":
        # T5 needs <pad> at id 0 (it is also decoder_start_token_id) and </s> at id 1.
        specials = ["<pad>", "</s>", "<unk>"]
    else:
        specials = ["<|endoftext|>", "<pad>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tok.train_from_iterator(texts, trainer)
    if arch == "t5":
        tok.post_processor = processors.TemplateProcessing(
            single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
        )
        return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>", pad_token="<pad>"
    )


def build_model(cfg: StarterConfig, tokenizer):
    """A freshly initialised tiny GPT-2 or T5."""
    from transformers import GPT2Config, GPT2LMHeadModel, T5Config, T5ForConditionalGeneration

    if cfg.arch == "t5":
        config = T5Config(
            vocab_size=len(tokenizer), d_model=cfg.dim, d_kv=cfg.dim // cfg.heads, d_ff=cfg.dim * 4,
            num_layers=cfg.layers, num_decoder_layers=cfg.layers, num_heads=cfg.heads,
            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
            decoder_start_token_id=tokenizer.pad_token_id, dropout_rate=0.0,
        )
        return T5ForConditionalGeneration(config)
    config = GPT2Config(
        vocab_size=len(tokenizer), n_positions=256, n_embd=cfg.dim, n_layer=cfg.layers, n_head=cfg.heads,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
    )
    return GPT2LMHeadModel(config)


def prompt_template(arch: str) -> str:
    """The prompt format the starter is trained on (T5 needs no trailing cue)."""
    return PROMPT_TEMPLATE if arch == "gpt2" else PROMPT_TEMPLATE.split("\n")[0]


def train_starter(cfg: StarterConfig, out_dir: Path, *, log=print, corpus: list | None = None) -> dict:
    """Train the starter into out_dir and return its training summary.

    corpus: (message, rewrite, kind) rows to train on instead of the project's own (bench/copy_trial.py's trial).
    """
    import torch

    started = time.perf_counter()
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    corpus = make_corpus(n=cfg.corpus_size, seed=cfg.seed) if corpus is None else corpus
    template = prompt_template(cfg.arch)
    # Leading space on the completion, not the prompt: TRL expects the prompt to be a token prefix.
    rows = [(template.replace("{input}", m), " " + r) for m, r, _ in corpus]
    tokenizer = train_tokenizer([p + c for p, c in rows], arch=cfg.arch, vocab=cfg.vocab)
    model = build_model(cfg, tokenizer)
    model.train()
    optim = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(optim, max_lr=cfg.lr, total_steps=cfg.steps, pct_start=0.1)
    losses = []
    for step in range(cfg.steps):
        chunk = rng.sample(rows, cfg.batch_size)
        batch = encode_completions(tokenizer, [p for p, _ in chunk], [c for _, c in chunk], is_seq2seq=cfg.arch == "t5")
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optim.step()
        sched.step()
        optim.zero_grad()
        losses.append(loss.item())
        if step % 50 == 0 or step == cfg.steps - 1:
            log(f"step {step + 1}/{cfg.steps} loss {loss.item():.3f}")
    model.eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "final_loss": sum(losses[-20:]) / len(losses[-20:]),
        "seconds": round(time.perf_counter() - started, 1),
        "config": asdict(cfg),
        "corpus_sha256": corpus_hash(corpus),
        "prompt_template": template,
    }


def recipe(cfg: StarterConfig) -> dict:
    """What makes a starter what it is: its config and its corpus, as recorded in its manifest."""
    return {"config": asdict(cfg), "corpus_sha256": corpus_hash(make_corpus(n=cfg.corpus_size, seed=cfg.seed))}


def matches(folder: Path, cfg: StarterConfig) -> bool:
    """Whether the version folder holds a starter of exactly this recipe."""
    manifest = folder / "manifest.json"
    if not manifest.is_file():
        return False
    recorded = json.loads(manifest.read_text())
    return all(recorded.get(k) == v for k, v in recipe(cfg).items())


def prebuilt(cfg: StarterConfig) -> Path | None:
    """The committed starter of this recipe, if there is one whose files match their recorded digests."""
    from app.versions.files import file_digests

    folder = PREBUILT / cfg.arch
    if not matches(folder, cfg):
        return None
    recorded = json.loads((folder / "manifest.json").read_text()).get("files")
    return folder if recorded == file_digests(folder) else None


def build_starter(cfg: StarterConfig, *, store: str | Path, log=print, rebuild: bool = False) -> tuple[int, Path]:
    """Publish the starter as a new version folder in the store: the committed one if it matches, else trained."""
    from worker.checkpoints import publish_checkpoint

    manifest = {
        "kind": "starter",
        "arch": "seq2seq" if cfg.arch == "t5" else "causal",
        "base_model": "starter",
        "parent_version": None,
        "prompt_format": "template",
    }
    source = None if rebuild else prebuilt(cfg)
    if source is None:
        return publish_checkpoint(store=store, save=lambda tmp: train_starter(cfg, tmp, log=log), manifest=manifest)
    log(f"using the committed starter in {source} (same config and corpus; --rebuild trains it again)")
    recorded = json.loads((source / "manifest.json").read_text())

    def copy(tmp: Path) -> dict:
        for path in source.iterdir():
            if path.is_file() and path.name != "manifest.json":
                shutil.copy2(path, tmp / path.name)
        return {k: recorded[k] for k in TRAINING_FIELDS if k in recorded} | {"prebuilt": True}

    return publish_checkpoint(store=store, save=copy, manifest=manifest)


# What train_starter returns into the manifest, carried over when the committed starter is published instead.
TRAINING_FIELDS = ("params", "final_loss", "seconds", "config", "corpus_sha256", "prompt_template")


def write_prebuilt(version_folder: Path, arch: str) -> Path:
    """Copy a published starter version into PREBUILT/arch, replacing what was there (for maintainers)."""
    target = PREBUILT / arch
    tmp = PREBUILT / f".{arch}.new"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(version_folder, tmp)
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    return target
