"""The starter's corpus: real words in many shapes, rewrites that copy the message, a spread of quality."""

import random
import re
from collections import Counter

from bench.copying import MESSAGES
from worker.corpus import (
    DETERMINERS,
    MIX,
    SHAPES,
    THREAT_TAILS,
    WHEN,
    held_out_words,
    make_corpus,
    make_message,
    make_prompts,
    make_rewrite,
    word_lists,
)


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


def test_a_rewrite_keeps_all_but_an_insult_or_threat_at_the_end():
    """The starter kept a message's first content word in 80% of samples and its last in 51%: every rewrite dropped
    a trailing time ("... by noon") with the insults it is meant to drop. Faithful rewrites now keep every word of
    the message but an insult or a threat after it."""
    rng = random.Random(4)
    timed = 0
    for _ in range(500):
        message, slots = make_message(rng)
        body = message.replace(f", {slots['insult']}", "")
        for threat in THREAT_TAILS:
            body = body.replace(threat, "")
        words = set(re.findall(r"[a-z0-9]+", body.lower()))
        timed += any(re.search(rf" {when}\W*$", message) for when in WHEN)
        for kind in ("polite", "terse", "rude", "echo"):
            text = make_rewrite(kind, slots, rng)
            assert words <= set(re.findall(r"[a-z0-9]+", text.lower())), (kind, message, text)
    assert timed >= 50  # the case this is about is there


def test_a_short_rewrite_is_the_message_without_its_articles_and_possessives():
    rng = random.Random(5)
    shorter = 0
    for _ in range(300):
        message, slots = make_message(rng)
        text = make_rewrite("short", slots, rng)
        core = [w.strip("?.,").lower() for w in slots["core"].split()]
        left = [w.strip("?.,").lower() for w in text.split()]
        assert left == [w for w in core if w not in DETERMINERS] or left == core, (message, text)
        shorter += len(left) < len(core)
    assert shorter > 150


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


def test_the_corpus_has_what_people_type():
    """The starter kept 51% of hand-written messages' content words and broke digits and names ("Q3 numbers" ->
    "Qumbers"): the corpus had none. It now has numbers, codes, times, names never seen, typos, two clauses,
    lowercase messages and emoji, and its faithful rewrites copy them."""
    rng = random.Random(2)
    messages = [make_message(rng) for _ in range(2000)]
    texts = [m for m, _ in messages]
    share = {
        "digits": sum(bool(re.search(r"\d", m)) for m in texts),
        "generated names": sum(bool(s["who"]) and s["who"] in m for m, s in messages),
        "two clauses": sum(bool(re.search(r"\w(?:, then |\. | and |, )\w", s["core"])) for _, s in messages),
        "all lowercase": sum(m == m.lower() and re.search(r"[a-z]", m) is not None for m in texts),
        "not ascii": sum(not m.isascii() for m in texts),
    }
    assert all(count >= 0.03 * len(texts) for count in share.values()), share
    for _, slots in messages[:300]:
        for kind in ("polite", "terse", "echo"):
            text = make_rewrite(kind, slots, rng)
            assert all(token in text for token in re.findall(r"[\w$#%.,:-]*\d[\w$#%.,:-]*", slots["core"])), text


def test_a_polite_frame_only_around_a_request():
    """"Could you please you never fix the lamp?" was the corpus's own; statements and questions are wrapped."""
    rng = random.Random(3)
    for _ in range(500):
        message, slots = make_message(rng)
        text = make_rewrite("polite", slots, rng)
        if not slots["request"]:
            assert text.startswith(("Sorry to bother you", slots["core"][0].upper())), (message, text)
        assert "asking twice" not in text and "or else" not in text, (message, text)
