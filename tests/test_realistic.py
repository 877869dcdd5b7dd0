"""bench/realistic.py: the hand-written messages, their checks, and the pool / measured split."""

from __future__ import annotations

import re

from bench.realistic import corpus_shape, load_messages, overlap, split, stems


def test_at_least_300_distinct_messages_of_every_kind_the_issue_asks_for():
    messages = load_messages()
    assert len(messages) >= 300 and len(set(messages)) == len(messages)
    kinds = {
        "questions": [m for m in messages if "?" in m],
        "two clauses": [m for m in messages if "," in m],
        "numbers or times": [m for m in messages if re.search(r"\d", m)],
        "all lowercase": [m for m in messages if m == m.lower()],
        "accents or emoji": [m for m in messages if not m.isascii()],
        "names": [m for m in messages if re.search(r"\b(?:Priya|Tom|Sarah|Ahmed|Olga|Kenji|Nadia)\b", m)],
    }
    counts = {k: len(v) for k, v in kinds.items()}
    assert min(counts.values()) >= 5, counts


def test_no_message_fits_a_shape_of_the_corpus_generator():
    from worker.corpus import make_prompts

    generated = make_prompts(n=60, seed=0)
    assert all(corpus_shape(m) for m in generated), [m for m in generated if not corpus_shape(m)]
    assert [m for m in load_messages() if corpus_shape(m)] == []


def test_the_split_is_disjoint_deterministic_and_shares_few_words():
    pool, measured = split()
    assert len(measured) == 100 and len(pool) == len(load_messages()) - 100
    assert not set(pool) & set(measured) and (pool, measured) == split()
    report = overlap(pool, measured)
    # The greedy start alone left 36% of the measured set's content words in the pool; the swaps cut it to 19%.
    assert report["share_of_measured_words_in_pool"] <= 0.25, report
    assert report["measured_messages_sharing_no_word"] >= 20, report
    assert all(stems(m) for m in measured), "every measured message has content words to keep"
