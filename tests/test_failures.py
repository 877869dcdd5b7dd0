"""bench/failures.py's requirements are exactly what each judge's "good" takes, so its bottleneck reading is honest."""

from __future__ import annotations

import random

import pytest

from bench.failures import CHECKS, NEEDS, shares
from bench.judges import JUDGES
from worker.corpus import MIX, make_message, make_rewrite


def samples(n: int = 400, seed: int = 0) -> list[tuple[str, str]]:
    """(input, candidate) over every rewrite kind of the corpus, plus candidates for another input (off topic)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        message, slots = make_message(rng)
        kind = MIX[i % len(MIX)][0]
        out.append((message, make_rewrite(kind, slots, rng)))
    return out + [(out[i][0], out[i + 1][1]) for i in range(0, 60, 2)]


@pytest.mark.parametrize("judge", sorted(NEEDS))
def test_a_sample_is_good_exactly_when_it_meets_every_requirement(judge):
    pairs = samples()
    goods = [JUDGES[judge].good(i, t) for i, t in pairs]
    assert 0 < sum(goods) < len(goods), "the examples must hold both good and not good samples"
    for (i, t), good in zip(pairs, goods, strict=True):
        assert good == all(CHECKS[need](i, t) for need in NEEDS[judge]), (judge, i, t)


def test_shares_count_samples_and_conditional_shares():
    rows = [{"input": "call the plumber", "samples": ["Please call the plumber, thank you.", "Call the plumber.",
                                                     "Please please please please."],
             "truncated": [False, False, False]}]
    out = shares(rows)
    assert out["good: politeness"] == pytest.approx(1 / 3)
    assert out["2+ polite markers"] == pytest.approx(1 / 3)
    # Of the samples meeting politeness's other requirements (the first two), one has two polite markers.
    assert out["politeness: 2+ polite markers, given the rest"] == pytest.approx(1 / 2)
    assert out["politeness: well-formed, given the rest"] == 1.0
    assert out["well-formed as the loop counts it"] == pytest.approx(2 / 3)
    assert out["not well-formed: a word 3 times in a row"] == pytest.approx(1 / 3)
    assert out["not well-formed: does not end a sentence"] == 0.0

