"""The starter's corpus: real words in many shapes, rewrites that copy the message, a spread of quality."""

import random
import re
from collections import Counter

from bench.copying import MESSAGES
from worker.corpus import MIX, SHAPES, held_out_words, make_corpus, make_message, make_prompts, make_rewrite, word_lists


def corpus_words(rows) -> set[str]:
    return {w for row in rows for text in row[:2] for w in re.findall(r"[a-z]+", text.lower())}


def test_the_corpus_never_uses_a_held_out_word():
    seen = corpus_words(make_corpus(n=5000, seed=0))
    held = {w for words in held_out_words().values() for w in words}
    everyday = {w for _, content in MESSAGES for w in content}
    assert len(held) > 500 and not seen & held
    assert not seen & everyday  # bench/copying.py measures copying on words the starter never saw


def test_word_lists_are_large():
    lists = word_lists()
    assert len(lists["nouns"]) > 5000 and len(lists["verbs"]) > 800 and len(lists["adjs"]) > 700


def test_faithful_rewrites_copy_the_core_verbatim():
    rng = random.Random(0)
    for _ in range(300):
        message, slots = make_message(rng)
        core = slots["core"].rstrip("?")
        for kind in ("polite", "terse", "rude", "echo"):
            text = make_rewrite(kind, slots, rng)
            assert core[1:] in text, (kind, message, text)  # all but the first letter's case


def test_a_spread_of_quality_and_shapes():
    rows = make_corpus(n=6000, seed=1)
    kinds = Counter(kind for _, _, kind in rows)
    for kind, share in MIX:
        assert abs(kinds[kind] / len(rows) - share) < 0.03, (kind, kinds[kind])
    assert len(SHAPES) >= 29
    assert make_corpus(n=50, seed=3) == make_corpus(n=50, seed=3)


def test_prompts_are_distinct():
    prompts = make_prompts(n=300, seed=1)
    assert len(prompts) == len(set(prompts)) == 300
