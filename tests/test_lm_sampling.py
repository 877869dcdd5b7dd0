"""Generation: both starters load through the real Auto* path and sample three candidates in one call."""

import pytest

from app.lm.checkpoint import load_checkpoint
from app.lm.sampling import InputTooLong, sample_candidates
from tests.conftest import spy_sample_rows


@pytest.mark.parametrize("arch", ["gpt2", "t5"])
def test_three_distinct_candidates_for_both_architectures(starter_dir, arch):
    loaded = load_checkpoint(str(starter_dir[arch]), device="cpu")
    assert loaded.is_seq2seq is (arch == "t5")
    prompt = loaded.format_prompt("Send me the report now.")
    assert "Send me the report now." in prompt and prompt != "Send me the report now."
    texts, raw = sample_candidates(loaded, model_prompt=prompt, n=3, max_new_tokens=12, seed=3)
    assert len(texts) == 3 and len(raw) == 3
    assert len(set(texts)) == 3, "duplicates must be resampled"
    # A causal model echoes its prompt; the candidates must not.
    assert not any(t.startswith("Rewrite politely") for t in texts)


def test_same_seed_same_samples(starter_dir):
    loaded = load_checkpoint(str(starter_dir["gpt2"]), device="cpu")
    prompt = loaded.format_prompt("Fix this bug today.")
    a = sample_candidates(loaded, model_prompt=prompt, n=3, max_new_tokens=12, seed=7)
    b = sample_candidates(loaded, model_prompt=prompt, n=3, max_new_tokens=12, seed=7)
    assert a == b


@pytest.mark.parametrize("arch", ["gpt2", "t5"])
def test_min_p_reaches_generation(starter_dir, arch):
    """min_p = 1 keeps only the likeliest token at each step: greedy, whatever the temperature; 0 is off."""
    loaded = load_checkpoint(str(starter_dir[arch]), device="cpu")
    prompt = loaded.format_prompt("Fix this bug today.")
    _, greedy = sample_candidates(loaded, model_prompt=prompt, n=6, temperature=1.5, min_p=1.0, max_new_tokens=12,
                                  seed=1, dedup_tries=0)
    _, free = sample_candidates(loaded, model_prompt=prompt, n=6, temperature=1.5, min_p=0.0, max_new_tokens=12,
                                seed=1, dedup_tries=0)
    assert len(set(greedy)) == 1 and len(set(free)) > 1


def test_one_sampling_call_per_request(starter_dir, monkeypatch):
    """Three candidates come from one batched call of the sampling loop unless duplicates resample."""
    loaded = load_checkpoint(str(starter_dir["gpt2"]), device="cpu")
    calls = spy_sample_rows(monkeypatch)
    sample_candidates(loaded, model_prompt=loaded.format_prompt("Check the invoice."), n=3,
                      max_new_tokens=12, seed=1, dedup_tries=0)
    assert calls == [(1, 3)]


@pytest.mark.parametrize("arch", ["gpt2", "t5"])
def test_the_sampling_loop_matches_generate(starter_dir, arch):
    """Greedy (min_p = 1), the hand-written loop gives generate()'s own continuations, padded rows included."""
    import torch

    from app.lm.sampling import _encode, _sample_rows

    loaded = load_checkpoint(str(starter_dir[arch]), device="cpu")
    prompts = [loaded.format_prompt(t) for t in ("Fix it.", "Why haven't you reviewed the meeting room yet?",
                                                 "Sign the contract by friday, seriously.")]
    enc = _encode(loaded, prompts, max_new_tokens=20, max_input_tokens=256)
    with torch.inference_mode():
        out = loaded.model.generate(**enc, do_sample=False, max_new_tokens=20,
                                    pad_token_id=loaded.tokenizer.pad_token_id)
    if not loaded.is_seq2seq:
        out = out[:, enc["input_ids"].shape[1]:]
    expected = [loaded.tokenizer.decode(row, skip_special_tokens=True).strip() for row in out]
    ours = _sample_rows(loaded, enc, 2, temperature=1.0, top_p=1.0, min_p=1.0, max_new_tokens=20)
    assert ours == [[text, text] for text in expected]
    assert any(text for text in expected), "the starter says something"


def test_dedup_is_bounded_and_reports_raw_samples(starter_dir):
    """A model that can only say one thing still answers, after a bounded number of resamples."""
    loaded = load_checkpoint(str(starter_dir["gpt2"]), device="cpu")
    prompt = loaded.format_prompt("Book the room.")
    # Near-zero temperature makes every sample the same greedy text.
    texts, raw = sample_candidates(loaded, model_prompt=prompt, n=3, temperature=1e-4, max_new_tokens=8,
                                   seed=1, dedup_tries=2)
    assert len(set(raw)) == 1
    assert len(texts) == 3


def test_input_over_the_token_limit_is_refused(starter_dir):
    loaded = load_checkpoint(str(starter_dir["gpt2"]), device="cpu")
    with pytest.raises(InputTooLong):
        sample_candidates(loaded, model_prompt="word " * 400, n=3, max_input_tokens=64)


@pytest.mark.parametrize("arch", ["gpt2", "t5"])
def test_a_batch_of_prompts_samples_as_each_prompt_alone(starter_dir, arch, monkeypatch):
    """One sampling call for several prompts of different lengths; padding changes no prompt's continuation."""
    from app.lm.sampling import sample_batch

    loaded = load_checkpoint(str(starter_dir[arch]), device="cpu")
    prompts = [loaded.format_prompt(t) for t in ("Fix it.", "Why haven't you reviewed the meeting room yet?",
                                                 "Sign the contract by friday, seriously.")]
    # Near-zero temperature: each row is its greedy continuation, so a row misaligned by padding would differ.
    greedy = dict(n=3, temperature=1e-4, max_new_tokens=12, dedup_tries=0, seed=0)
    alone = [sample_candidates(loaded, model_prompt=p, **greedy)[1] for p in prompts]
    calls = spy_sample_rows(monkeypatch)
    together = [raw for _, raw in sample_batch(loaded, model_prompts=prompts, **greedy)]
    assert calls == [(3, 3)]
    assert together == alone


def test_requests_waiting_together_are_sampled_in_one_batch(starter_dir, monkeypatch):
    """sample_coalesced: requests that wait while a batch is sampled go in the next batch together, under one seed,
    each at an offset that reproduces its samples; one request alone samples at once; a long input fails only its
    own request."""
    import threading
    import time

    from app.lm import sampling

    loaded = load_checkpoint(str(starter_dir["gpt2"]), device="cpu")
    settings = {"n": 3, "max_new_tokens": 10}
    prompts = [loaded.format_prompt(t) for t in ("Send it now.", "Fix the door.", "Call me back.")]

    # Alone: exactly what sample_batch gives for its prompt and seed.
    alone = sampling.sample_coalesced(loaded, model_prompts=prompts[:1], seed=5, **settings)
    assert alone == (sampling.sample_batch(loaded, model_prompts=prompts[:1], seed=5, **settings), 5, 0, 1)

    calls = spy_sample_rows(monkeypatch)
    with sampling._COALESCE:
        sampling._NOW["sampling"] = True  # as if another request's batch were being sampled now
    out = {}
    threads = [threading.Thread(target=lambda i=i: out.__setitem__(i, sampling.sample_coalesced(
        loaded, model_prompts=[prompts[i]], seed=100 + i, **settings))) for i in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while len(sampling._WAITING) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    with sampling._COALESCE:
        assert len(sampling._WAITING) == 3
        sampling._NOW["sampling"] = False  # that batch ends: the next one takes all three
        sampling._COALESCE.notify_all()
    for t in threads:
        t.join(timeout=60)
    assert calls[0] == (3, 3)  # one call of the sampling loop, three prompts
    seeds = {seed for _, seed, _, _ in out.values()}
    assert len(seeds) == 1 and {size for *_, size in out.values()} == {3}
    [seed] = seeds
    assert seed in (100, 101, 102)  # the seed of the request that ran the batch
    order = sorted(out, key=lambda i: out[i][2])
    batch = sampling.sample_batch(loaded, model_prompts=[prompts[i] for i in order], seed=seed, **settings)
    for i in range(3):
        results, _, offset, _ = out[i]
        assert results == batch[offset:offset + 1]
    assert sampling._WAITING == [] and not sampling._NOW["sampling"] and sampling._NOW["requests"] == 0

    with pytest.raises(InputTooLong):
        sampling.sample_coalesced(loaded, model_prompts=[loaded.format_prompt("word " * 400)], seed=1, **settings)
    assert sampling._WAITING == [] and not sampling._NOW["sampling"] and sampling._NOW["requests"] == 0


def test_batches_run_on_a_sampling_thread_of_the_lowest_priority_with_the_callers_context(starter_dir, monkeypatch):
    """sample_coalesced samples on one thread of this process under SCHED_IDLE (so answers and database round trips
    preempt it); the calling thread keeps its priority; a batch sampled inside interruptible() still stops."""
    import os
    import threading

    from app.lm import sampling

    loaded = load_checkpoint(str(starter_dir["gpt2"]), device="cpu")
    settings = {"n": 3, "max_new_tokens": 10}
    prompt = loaded.format_prompt("Send it now.")
    mine = os.sched_getscheduler(0)
    seen = []
    real = sampling.sample_batch

    def recording(*args, **kwargs):
        seen.append((threading.current_thread().name, os.sched_getscheduler(0)))
        return real(*args, **kwargs)

    monkeypatch.setattr(sampling, "sample_batch", recording)
    sampling.sample_coalesced(loaded, model_prompts=[prompt], seed=1, **settings)
    with sampling.interruptible(lambda: True), pytest.raises(sampling.Interrupted):
        sampling.sample_coalesced(loaded, model_prompts=[prompt], seed=2, **settings)
    assert [name.startswith("sampler") for name, _ in seen] == [True, True]
    assert {policy for _, policy in seen} == {os.SCHED_IDLE}
    assert os.sched_getscheduler(0) == mine  # the caller is as it was
    assert sampling._WAITING == [] and not sampling._NOW["sampling"] and sampling._NOW["requests"] == 0


@pytest.fixture
def fresh_sampler():
    """The process's sampler state as at start (no batch timed yet), put back afterwards."""
    from app.lm import sampling

    saved = dict(sampling._NOW)
    sampling._NOW.update(sampling=False, since=0.0, prompts=0, requests=0, cost=sampling.BatchCost())
    yield sampling
    sampling._NOW.update(saved)


def test_a_request_that_would_wait_too_long_is_refused_at_once(starter_dir, fresh_sampler):
    """Busy (a 503 with Retry-After in the app) when the backlog, at this process's measured pace, passes max_wait,
    or when every sampling slot is taken; the refused request joins nothing; the prefetcher (no limits) always
    waits its turn."""
    import threading
    import time

    from app.platform.exceptions import Busy

    sampling = fresh_sampler
    loaded = load_checkpoint(str(starter_dir["gpt2"]), device="cpu")
    settings = {"n": 3, "max_new_tokens": 10}
    prompt = loaded.format_prompt("Send it now.")
    # No batch timed yet: nothing to judge by, so a request is let in (and times the first batch).
    sampling.sample_coalesced(loaded, model_prompts=[prompt], seed=1, max_wait=0.001, **settings)
    pace = sampling._NOW["cost"].seconds(1)  # one size timed: proportional, so 1,000 prompts cost 1,000 x this
    assert pace > 0 and sampling._NOW["requests"] == 0

    with sampling._COALESCE:  # a batch of 1,000 prompts started just now: about 1,000 x pace to go
        sampling._NOW.update(sampling=True, since=time.monotonic(), prompts=1000)
    with pytest.raises(Busy) as busy:
        sampling.sample_coalesced(loaded, model_prompts=[prompt], seed=2, max_wait=pace * 500, **settings)
    assert busy.value.retry_after >= int(pace * 1000) and "Try again in" in str(busy.value)
    assert sampling._WAITING == [] and sampling._NOW["requests"] == 0

    # Slots: with `slots` requests in the sampler, the next is refused whatever the wait.
    with sampling._COALESCE:
        sampling._NOW.update(requests=2, prompts=0)
    with pytest.raises(Busy):
        sampling.sample_coalesced(loaded, model_prompts=[prompt], seed=3, slots=2, **settings)
    with sampling._COALESCE:
        sampling._NOW.update(requests=0)

    # Without limits (the prefetcher) a caller waits for the batch under way, then samples.
    out = []
    waiter = threading.Thread(target=lambda: out.append(sampling.sample_coalesced(
        loaded, model_prompts=[prompt], seed=4, **settings)))
    waiter.start()
    deadline = time.monotonic() + 30
    while not sampling._WAITING and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(sampling._WAITING) == 1 and sampling._NOW["requests"] == 1
    with sampling._COALESCE:
        sampling._NOW["sampling"] = False
        sampling._COALESCE.notify_all()
    waiter.join(timeout=60)
    assert out and out[0][1:] == (4, 0, 1)
    assert sampling._WAITING == [] and sampling._NOW["requests"] == 0


def test_a_batch_costs_a_fixed_part_and_a_part_per_prompt():
    """Fitted to the batches timed: a line through two sizes or more, recent batches weighing most; proportional
    while one size has been timed, or where noise would make a prompt (or an empty batch) cost nothing or less."""
    from app.lm.sampling import BatchCost

    cost = BatchCost()
    cost.record(2.0, 1)
    assert cost.fit() == (0.0, 2.0) and cost.seconds(5) == 10.0  # one size: nothing says what is fixed
    for n in (4, 1, 8, 2):
        cost.record(1.5 + 0.5 * n, n)
    fixed, per = cost.fit()
    assert fixed == pytest.approx(1.5) and per == pytest.approx(0.5) and cost.seconds(16) == pytest.approx(9.5)

    recent = BatchCost()
    for n, seconds in ((1, 9.0), (4, 12.0), (1, 2.0), (4, 3.5)):  # the machine got faster: the last batches count
        recent.record(seconds, n)
    assert recent.seconds(4) < (12.0 + 3.5) / 2 and recent.seconds(1) < (9.0 + 2.0) / 2

    noisy = BatchCost()
    noisy.record(3.0, 1)
    noisy.record(2.0, 4)  # a bigger batch that took less: no line with a cost per prompt
    assert noisy.fit()[0] == 0.0 and noisy.seconds(5) == pytest.approx(5 * (0.5 * 3.0 + 2.0) / (0.5 * 1 + 4))


def test_a_cost_line_says_how_many_prompts_end_within_a_time():
    """At 1.5 s a batch plus 0.5 s a prompt, 7 prompts end within 5 s (8 would take 5.5 s), none within 1 s; a line
    whose prompts cost nothing takes any number once its fixed part fits; BatchCost says whether it has timed any."""
    from app.lm.sampling import BatchCost, CostLine

    line = CostLine(1.5, 0.5)
    assert line.seconds(7) == 5.0 and line.prompts_within(5.0) == 7 and line.prompts_within(1.0) == 0
    assert CostLine(1.0, 0.0).prompts_within(2.0) > 1000 and CostLine(1.0, 0.0).prompts_within(0.5) == 0
    cost = BatchCost()
    assert not cost.timed
    cost.record(2.0, 1)
    assert cost.timed and isinstance(cost.fit(), CostLine)


def test_the_wait_is_judged_by_what_a_batch_of_that_size_costs(fresh_sampler):
    """A request joining five waiting prompts is let in when one batch of six ends in time, though six times the
    cost of a batch of one would not (it was judged so, and refused)."""
    import time

    from app.lm.sampling import BatchCost, _Waiting
    from app.platform.exceptions import Busy

    sampling = fresh_sampler
    cost = BatchCost()
    cost.record(2.0, 1)
    cost.record(3.5, 4)  # 1.5 s fixed, 0.5 s a prompt: a batch of six takes 4.5 s
    waiting = [_Waiting(None, ["p"] * 5, {}, 1)]
    with sampling._COALESCE:
        sampling._NOW.update(cost=cost, sampling=False)
        sampling._WAITING.extend(waiting)
        try:
            sampling._admit(1, max_wait=5.0, slots=None)  # 4.5 s: in time (2.0 s x 6 = 12 s would refuse)
            with pytest.raises(Busy) as busy:
                sampling._admit(1, max_wait=4.0, slots=None)
            assert busy.value.retry_after == 5
            sampling._NOW.update(sampling=True, since=time.monotonic(), prompts=4)  # a batch of four under way
            with pytest.raises(Busy):
                sampling._admit(1, max_wait=5.0, slots=None)  # 3.5 s of it left, then 4.5 s
        finally:
            for w in waiting:
                sampling._WAITING.remove(w)
