"""Sample candidates: one batched call of the sampling loop for many prompts, duplicates resampled (bounded)."""

from __future__ import annotations

import contextvars
import math
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import NamedTuple

from app.lm.checkpoint import LoadedModel
from app.lm.device import lower_priority
from app.platform.exceptions import Busy

# Sampling seeds torch's global RNG, so generations in one process run one at a time: that keeps every stored seed
# reproducible where two threads of one process sample at once (a threaded server, or the gate's caller).
_GENERATE_LOCK = threading.Lock()


class InputTooLong(ValueError):
    """The formatted prompt does not fit the model's input limit."""


class Interrupted(RuntimeError):
    """A batch sampled under interruptible() stopped early because its check said so; it returns nothing."""


# A check that a batch nobody waits for (a prefetcher refill) runs every INTERRUPT_STEPS decoding steps: True stops
# it, so a request handed to the prefetcher starts at once instead of waiting for the refill (up to a second or
# more) to end. A context variable, so only the batches sampled inside interruptible() see it.
_INTERRUPT: contextvars.ContextVar = contextvars.ContextVar("sampling_interrupt", default=None)
INTERRUPT_STEPS = 2


@contextmanager
def interruptible(check):
    """Batches sampled in this block stop (Interrupted) as soon as check() is true."""
    token = _INTERRUPT.set(check)
    try:
        yield
    finally:
        _INTERRUPT.reset(token)


def sampling_settings(config) -> dict:
    """The served sampling settings (a config mapping: Flask's, or vars(Config())) as this module's keywords: the one
    mapping from settings to sampling, used by comparisons (each records it), the arena, a run's spec (the gate
    samples as the app serves) and the benches."""
    return {
        "n": config["NUM_CANDIDATES"],
        "temperature": config["TEMPERATURE"],
        "top_p": config["TOP_P"],
        "min_p": config["MIN_P"],
        "max_new_tokens": config["MAX_NEW_TOKENS"],
        "max_input_tokens": config["MAX_INPUT_TOKENS"],
        "dedup_tries": config["DEDUP_TRIES"],
    }


def end_token_ids(loaded: LoadedModel) -> list[int]:
    """Tokens that end a sample: the generation config's and the tokenizer's end token. A chat model's tokenizer ends
    with its end-of-turn token (ChatML's <|im_end|>), which training appends to every completion too."""
    eos = loaded.model.generation_config.eos_token_id
    ids = eos if isinstance(eos, list) else [] if eos is None else [eos]
    tok_eos = loaded.tokenizer.eos_token_id
    return list(dict.fromkeys([*ids, *([] if tok_eos is None else [tok_eos])]))


def _warpers(loaded: LoadedModel, *, temperature: float, top_p: float, min_p: float):
    """The library's own logits warpers, in the order generate() applies them."""
    from transformers import (
        LogitsProcessorList,
        MinPLogitsWarper,
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    # A checkpoint's own top_k, else generate()'s default of 50 (GenerationConfig's defaults), so the loop samples
    # what generate() sampled. It also makes top-p cheap on a large vocabulary: sorting mostly -inf is fast.
    top_k = loaded.model.generation_config.top_k or 50
    warpers = LogitsProcessorList([TemperatureLogitsWarper(temperature), TopKLogitsWarper(top_k),
                                   TopPLogitsWarper(top_p)])
    if min_p:  # 0 is off
        warpers.append(MinPLogitsWarper(min_p))
    return warpers


def _start(loaded: LoadedModel, enc: dict, rows):
    """Run each prompt once, then give every sample row its prompt's state: (last logits, step inputs, cache)."""
    import torch

    model, mask = loaded.model, enc["attention_mask"]
    if loaded.is_seq2seq:
        # The encoder runs once per prompt; the decoder starts from its start token in every sample row.
        hidden = model.get_encoder()(input_ids=enc["input_ids"], attention_mask=mask).last_hidden_state
        step = {"encoder_outputs": (hidden[rows],), "attention_mask": mask[rows]}
        start = torch.full((len(rows), 1), model.config.decoder_start_token_id, device=model.device)
        out = model(**step, decoder_input_ids=start, use_cache=True)
    else:
        # Left padding: positions count real tokens only, so each row continues its own prompt.
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = model(input_ids=enc["input_ids"], attention_mask=mask, position_ids=positions, use_cache=True,
                    logits_to_keep=1)
        out.past_key_values.batch_select_indices(rows)
        step = {"attention_mask": mask[rows], "position_ids": positions[rows, -1:]}
    logits = out.logits[:, -1] if loaded.is_seq2seq else out.logits[rows, -1]
    return logits, step, out.past_key_values


def _sample_rows(loaded: LoadedModel, enc: dict, n: int, *, temperature: float, top_p: float,
                 max_new_tokens: int, min_p: float = 0.0) -> list[list[str]]:
    """n samples per row of enc, as one n-long list per row.

    Written by hand because generate() cannot do the two things that cost most here (measured in
    docs/BENCHMARKS.md): it runs a prompt once per sample rather than once, and it keeps computing every sample
    until the longest one ends. This loop shares each prompt's cache between its samples and drops a sample from
    the batch when it ends. Sampling itself is the library's (its logits warpers, torch.multinomial).
    """
    import torch

    model, tok = loaded.model, loaded.tokenizer
    eos = torch.tensor(end_token_ids(loaded), device=model.device)
    warpers = _warpers(loaded, temperature=temperature, top_p=top_p, min_p=min_p)
    rows = torch.arange(enc["input_ids"].shape[0], device=model.device).repeat_interleave(n)
    tokens: list[list[int]] = [[] for _ in range(len(rows))]
    interrupt = _INTERRUPT.get()
    with torch.inference_mode():
        logits, step, cache = _start(loaded, enc, rows)
        alive = torch.arange(len(rows), device=model.device)  # which sample each batch row still is
        for left in range(max_new_tokens, 0, -1):
            chosen = torch.multinomial(warpers(None, logits.float()).softmax(-1), 1)
            ended = torch.isin(chosen[:, 0], eos)
            for sample, token, end in zip(alive.tolist(), chosen[:, 0].tolist(), ended.tolist(), strict=True):
                if not end:
                    tokens[sample].append(token)
            if left == 1 or bool(ended.all()):
                break
            if interrupt is not None and left % INTERRUPT_STEPS == 0 and interrupt():
                raise Interrupted("stopped for a request that waits")
            if bool(ended.any()):
                keep = (~ended).nonzero()[:, 0]
                cache.batch_select_indices(keep)
                alive, chosen = alive[keep], chosen[keep]
                step = {k: (v[0][keep],) if k == "encoder_outputs" else v[keep] for k, v in step.items()}
            if loaded.is_seq2seq:
                out = model(**step, decoder_input_ids=chosen, past_key_values=cache, use_cache=True)
            else:
                step["attention_mask"] = torch.cat([step["attention_mask"], torch.ones_like(chosen)], dim=1)
                step["position_ids"] = step["position_ids"] + 1
                out = model(input_ids=chosen, **step, past_key_values=cache, use_cache=True)
            logits, cache = out.logits[:, -1], out.past_key_values
    texts = [tok.decode(t, skip_special_tokens=True).strip() for t in tokens]
    return [texts[i : i + n] for i in range(0, len(texts), n)]


def input_limit(loaded: LoadedModel, *, max_new_tokens: int, max_input_tokens: int) -> int:
    """The most prompt tokens a sample may start from: MAX_INPUT_TOKENS, and for a decoder-only model what its
    context leaves after the answer's MAX_NEW_TOKENS."""
    if loaded.max_positions and not loaded.is_seq2seq:
        return min(max_input_tokens, loaded.max_positions - max_new_tokens)
    return max_input_tokens


def check_fits(length: int, limit: int) -> None:
    """Refuse a prompt of `length` tokens beyond `limit`, in words an annotator can act on."""
    if length > limit:
        cut = -(-100 * (length - limit) // length)  # rounded up
        raise InputTooLong(f"This input is too long for the model: {length} tokens (pieces of words, with the task's "
                           f"instructions), and it takes at most {limit}. Shorten it by about {cut}%.")


def prompt_length(loaded: LoadedModel, prompt: str) -> int:
    """How many tokens the model would read for `prompt`."""
    return len(loaded.tokenizer(prompt)["input_ids"])


def _encode(loaded: LoadedModel, prompts: list[str], *, max_new_tokens: int, max_input_tokens: int) -> dict:
    """Tokenize prompts as one padded batch, refusing any that does not fit the model."""
    tok = loaded.tokenizer
    limit = input_limit(loaded, max_new_tokens=max_new_tokens, max_input_tokens=max_input_tokens)
    # Left padding for a decoder-only model, so every row's next token follows its own prompt directly.
    enc = tok(prompts, return_tensors="pt", padding=True, padding_side="right" if loaded.is_seq2seq else "left")
    check_fits(int(enc["attention_mask"].sum(dim=1).max()), limit)
    return {k: v.to(loaded.model.device) for k, v in enc.items()}


def sample_batch(
    loaded: LoadedModel,
    *,
    model_prompts: list[str],
    n: int = 3,
    temperature: float = 1.0,
    top_p: float = 0.95,
    min_p: float = 0.0,
    max_new_tokens: int = 80,  # the served default (MAX_NEW_TOKENS); the app always passes its setting
    max_input_tokens: int = 256,
    seed: int = 0,
    dedup_tries: int = 3,
) -> list[tuple[list[str], list[str]]]:
    """Sample n candidates for every prompt in one call of the sampling loop; resample duplicates (bounded tries).

    Returns one (candidates, raw) per prompt, where raw is the first call's samples before any resampling,
    so diversity can be measured honestly.
    """
    import torch

    kwargs = dict(temperature=temperature, top_p=top_p, min_p=min_p, max_new_tokens=max_new_tokens)
    enc = _encode(loaded, model_prompts, max_new_tokens=max_new_tokens, max_input_tokens=max_input_tokens)
    with _GENERATE_LOCK:
        torch.manual_seed(seed)
        raws = _sample_rows(loaded, enc, n, **kwargs)
        uniques = [list(dict.fromkeys(raw)) for raw in raws]
        for _ in range(dedup_tries):
            short = [i for i, unique in enumerate(uniques) if len(unique) < n]
            if not short:
                break
            # Only the prompts that still lack distinct candidates go round again, together.
            again = _sample_rows(loaded, {k: v[short] for k, v in enc.items()}, n, **kwargs)
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


class _Waiting:
    """One caller's prompts, waiting in this process for the next batch (see sample_coalesced)."""

    def __init__(self, loaded: LoadedModel, prompts: list[str], settings: dict, seed: int) -> None:
        self.loaded, self.prompts, self.settings, self.seed = loaded, prompts, settings, seed
        self.done, self.results, self.error, self.offset, self.size = False, None, None, 0, 0


class CostLine(NamedTuple):
    """What a batch costs: fixed seconds, plus seconds per prompt (BatchCost's fit; the prefetcher's heartbeat carries
    its own to the web)."""

    fixed: float
    per: float

    def seconds(self, prompts: int) -> float:
        """The expected seconds of a batch of `prompts`."""
        return self.fixed + self.per * prompts

    def prompts_within(self, seconds: float) -> int:
        """The most prompts a batch may hold and end within `seconds` (0 where not even one would)."""
        if seconds < self.fixed:
            return 0
        return int((seconds - self.fixed) / self.per) if self.per > 0 else 1 << 30  # batches timed as free: any


class BatchCost:
    """The seconds a batch of n prompts takes, fitted as fixed + n x per-prompt to recent batches (each batch weighs
    DECAY of the one timed after it); proportional to n until two sizes have been timed. Used by the web's sampler
    and by the prefetcher alike."""

    # A batch's cost is far from proportional to its size: a GPT-2-small comparison costs 2.9 s alone and 1.1 s in a
    # batch of 8 (bench/batch_cost.py). Judged by the seconds per prompt of small batches, a request joining four
    # others read as waiting 2.7x longer than it would, and was refused.
    DECAY = 0.5  # as the seconds per prompt it replaces were averaged

    def __init__(self) -> None:
        self._w = self._n = self._t = self._nn = self._nt = 0.0

    def record(self, seconds: float, prompts: int) -> None:
        """Fold in one batch of `prompts` that took `seconds`."""
        d = self.DECAY
        self._w, self._n, self._t = d * self._w + 1, d * self._n + prompts, d * self._t + seconds
        self._nn, self._nt = d * self._nn + prompts * prompts, d * self._nt + prompts * seconds

    @property
    def timed(self) -> bool:
        """Whether a batch has been timed (fit() needs one)."""
        return self._w > 0

    def fit(self) -> CostLine:
        """A weighted least-squares line through the batches timed, or a line through the origin where they are of
        one size or the line would say a prompt or an empty batch costs nothing or less."""
        mean_n, mean_t = self._n / self._w, self._t / self._w
        spread = self._nn / self._w - mean_n * mean_n
        if spread > 1e-6 * mean_n * mean_n:
            per = (self._nt / self._w - mean_n * mean_t) / spread
            fixed = mean_t - per * mean_n
            if per > 0 and fixed >= 0:
                return CostLine(fixed, per)
        return CostLine(0.0, mean_t / mean_n)

    def seconds(self, prompts: int) -> float:
        """The expected seconds of a batch of `prompts`."""
        return self.fit().seconds(prompts)


# The batches of sample_coalesced run on one thread of their own per process, at the lowest CPU priority: the
# threads that store answers, and the database processes they wait on, preempt it at once instead of waiting for a
# batch's time slice (bench/load.py at 20 and 60 annotators: docs/BENCHMARKS.md, "The web's batches on a sampling
# thread"; answer p95 and the buffer's share both better). One thread:
# batches run one at a time anyway. Made on first use, and again after a fork, in the process that samples.
_SAMPLER: dict = {"pid": None, "pool": None}
_SAMPLER_LOCK = threading.Lock()


def _sampling_thread() -> ThreadPoolExecutor:
    """This process's sampling thread."""
    with _SAMPLER_LOCK:
        if _SAMPLER["pid"] != os.getpid():
            _SAMPLER.update(pid=os.getpid(), pool=ThreadPoolExecutor(1, thread_name_prefix="sampler",
                                                                     initializer=lower_priority))
        return _SAMPLER["pool"]


_COALESCE = threading.Condition()
_WAITING: list[_Waiting] = []
# Guarded by _COALESCE: whether a caller of this process samples a batch now, since when and how many prompts, how
# many requests of this process are in the sampler (waiting or sampling), and what its batches cost.
_NOW = {"sampling": False, "since": 0.0, "prompts": 0, "requests": 0, "cost": BatchCost()}


def _expected_wait(prompts: int) -> float | None:
    """Seconds until `prompts` more would be sampled here: the batch under way, then one batch with every waiting
    prompt and these; None before this process has timed a batch. Call with _COALESCE held."""
    cost = _NOW["cost"]
    if not cost.timed:
        return None
    left = max(0.0, _NOW["since"] + cost.seconds(_NOW["prompts"]) - time.monotonic()) if _NOW["sampling"] else 0.0
    return left + cost.seconds(sum(len(w.prompts) for w in _WAITING) + prompts)


def _admit(prompts: int, *, max_wait: float | None, slots: int | None) -> None:
    """Refuse a request (Busy) that would wait past max_wait or find every sampling slot taken. Call with _COALESCE
    held. The slots keep threads for answers: a thread that waits here serves nothing else meanwhile."""
    if max_wait is None and slots is None:
        return
    wait = _expected_wait(prompts)
    full = slots is not None and _NOW["requests"] >= slots
    if full or (wait is not None and max_wait is not None and wait > max_wait):
        retry = max(1, math.ceil(wait if wait is not None else 1))
        raise Busy(f"The model is busy: {_NOW['requests']} requests are waiting for it here, about {retry} s of "
                   f"sampling. Try again in {retry} s.", retry_after=retry)


def check_room(prompts: int, *, max_wait: float | None, slots: int | None) -> None:
    """Raise Busy now if a request for `prompts` would be refused by sample_coalesced (which asks again when the
    request comes): lets a caller refuse before it spends anything on the request, such as a generation budget."""
    with _COALESCE:
        _admit(prompts, max_wait=max_wait, slots=slots)


def slots_full(slots: int | None) -> bool:
    """Whether this process's requests already hold `slots` threads waiting for a sampler (its own batches or the
    prefetcher's: app/versions/handoff.py counts its waiters here too, so the bound is one for both)."""
    with _COALESCE:
        return slots is not None and _NOW["requests"] >= slots


@contextmanager
def holding_slot(slots: int | None):
    """Count the caller among this process's requests waiting for a sampler while the block runs; Busy (1 s) when
    every slot is taken. For a request that waits elsewhere (the prefetcher) but holds a web thread meanwhile."""
    with _COALESCE:
        if slots is not None and _NOW["requests"] >= slots:
            raise Busy("The model is busy: every thread that may wait for it is waiting. Try again in 1 s.",
                       retry_after=1)
        _NOW["requests"] += 1
    try:
        yield
    finally:
        with _COALESCE:
            _NOW["requests"] -= 1


def check_prompts(loaded: LoadedModel, model_prompts: list[str], settings: dict) -> None:
    """InputTooLong for a prompt that does not fit: one request's long input must fail that request, not the batch
    it joins (in this process, or the prefetcher's)."""
    limit = input_limit(loaded, max_new_tokens=settings.get("max_new_tokens", 80),
                        max_input_tokens=settings.get("max_input_tokens", 256))
    for prompt in model_prompts:
        check_fits(prompt_length(loaded, prompt), limit)


def sample_coalesced(
    loaded: LoadedModel, *, model_prompts: list[str], seed: int, max_wait: float | None = None,
    slots: int | None = None, **settings
) -> tuple[list[tuple[list[str], list[str]]], int, int, int]:
    """sample_batch for a request, batched with whatever other requests of this process wait at the same moment.

    While one batch is sampled, requests that arrive wait; the first of them to run next takes every waiting request
    with the same model and settings into one batch, under its own seed. A request alone samples at once, as
    sample_batch would: no one waits for company. Returns (its results, the batch's seed, its offset in the batch,
    the batch's size), which reproduce its samples (the others' prompts are found by the seed).
    A request that would wait past max_wait seconds (by what this process's last batches cost), or that finds
    `slots` requests in the sampler already, raises Busy at once and samples nothing; None admits every caller.
    Written here because the batching has to happen inside the sampling loop's process and lock; no library does it
    for a hand-written sampling loop on CPU."""
    check_prompts(loaded, model_prompts, settings)
    me = _Waiting(loaded, model_prompts, settings, seed)
    with _COALESCE:
        _admit(len(model_prompts), max_wait=max_wait, slots=slots)
        _WAITING.append(me)
        _NOW["requests"] += 1
        while _NOW["sampling"] and not me.done:
            _COALESCE.wait()
        if me.done:  # sampled in another caller's batch
            _NOW["requests"] -= 1
            return _outcome(me)
        batch = [w for w in _WAITING if w.loaded is loaded and w.settings == settings]
        for w in batch:
            _WAITING.remove(w)
        prompts = [p for w in batch for p in w.prompts]
        _NOW.update(sampling=True, since=time.monotonic(), prompts=len(prompts))
    results, error = None, RuntimeError("the batch this request joined was interrupted")
    try:
        # The caller's context goes with the batch: a prefetcher's refill is sampled inside interruptible().
        run = contextvars.copy_context().run
        results = _sampling_thread().submit(run, sample_batch, loaded, model_prompts=prompts, seed=seed,
                                            **settings).result()
        error = None
    except Exception as exc:  # noqa: BLE001 - handed to every request of the batch, each raises it
        error = exc
    finally:  # whatever happened, the others are answered and the next batch may start
        with _COALESCE:
            if error is None:
                _NOW["cost"].record(time.monotonic() - _NOW["since"], len(prompts))
            offset = 0
            for w in batch:
                w.offset, w.size, w.seed, w.error = offset, len(prompts), seed, error
                w.results = results[offset:offset + len(w.prompts)] if results is not None else None
                w.done, offset = True, offset + len(w.prompts)
            _NOW["requests"] -= 1  # this caller; the others count themselves out as they wake
            _NOW["sampling"] = False
            _COALESCE.notify_all()
    return _outcome(me)


def _outcome(me: _Waiting) -> tuple[list[tuple[list[str], list[str]]], int, int, int]:
    """A waiting request's results, or the batch's error raised again."""
    if me.error is not None:
        raise me.error
    return me.results, me.seed, me.offset, me.size
