"""The simulated annotators of bench/loop.py: their taste matches the corpus's labels, and they disagree."""

from __future__ import annotations

import random

import pytest

from bench.judges import (
    BREVITY_EXTRA,
    JUDGES,
    MALFORMED,
    brevity,
    content_kept,
    content_words,
    extra_words,
    fidelity,
    has_threat,
    politeness,
    spliced,
    well_formed,
)
from worker.corpus import make_message, make_rewrite

POL, BRE, FID = JUDGES["politeness"], JUDGES["brevity"], JUDGES["fidelity"]


def rewrites(kind: str, n: int = 300, seed: int = 0) -> list[tuple[str, str]]:
    """(blunt input, rewrite of that kind) pairs from the starter task's own generator."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        message, slots = make_message(rng)
        out.append((message, make_rewrite(kind, slots, rng)))
    return out


def whole(rows: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """The rewrites that are neither splices (the corpus's polite frames around shapes they do not fit) nor keep the
    message's threat ("I'm not asking twice")."""
    return [(m, t) for m, t in rows if not spliced(t) and not has_threat(t)]


def test_politeness_accepts_every_polite_rewrite_of_the_corpus():
    rows = rewrites("polite", n=1000)
    # Before issue 27 the corpus framed statements and questions as requests ("please where did you put the
    # cardigan") and kept threats: 68 of 300 (23%) were broken. Statements are now wrapped, threats dropped.
    # One shape still splices: "I need {num} {n} by {time}" loses its "I" ("... please need 5 forks by noon"); the
    # starter was built on it, so the corpus keeps it (changing it means a new starter), and the judge refuses it.
    broken = [t for m, t in rows if (m, t) not in whole(rows)]
    assert all(" please need " in t for t in broken) and len(broken) <= len(rows) // 100, broken
    rows = whole(rows)
    assert all(politeness(m, t) == POL.max_score for m, t in rows), [(m, t) for m, t in rows if not POL.good(m, t)]


def test_the_audits_splices_and_a_dropped_word_fail():
    """Each scored 1.0 (politeness, fidelity) or 0.833 (brevity) before."""
    message = "you never fix the lamp"
    for text in ("Could you please you never fix the lamp? Thank you!",
                 "Fix the lamp. I'm not asking twice, please. Thank you!",
                 "Would you kindly the lamp again? fix it? Thanks a lot.",
                 "Sorry to bother you, but please where did you put the lamp. Thank you.",
                 "Could you please need the lamp fixed by Thursday noon? Thank you!"):
        assert not well_formed(text) and not POL.good(message, text) and not FID.good(message, text), text
    assert politeness("fix the lamp now", "Fix the lamp, please. I'm not asking twice. Thank you!") < POL.accept
    assert brevity("fix the lamp in the hall", "Fix the lamp.") < BRE.accept  # "hall" dropped: was 0.833
    assert brevity("fix the lamp in the hall", "Fix the lamp in the hall.") >= BRE.accept
    for text in ("Could you please fix the lamp? Thank you!", "Could you not leave it there? Thanks.",
                 "Will you need the lamp tomorrow? Thanks.", "Please have the lamp fixed by noon. Thank you!",
                 "Please fix the lamp when you get a chance. Thank you!"):
        assert not spliced(text) or text.startswith("Could you not"), text  # "could you not ...": refused, rare


@pytest.mark.parametrize("kind", ["rude", "off_topic", "repetitive", "terse"])
def test_politeness_rejects_the_poor_rewrites_of_the_corpus(kind):
    for message, text in rewrites(kind):
        assert politeness(message, text) < POL.accept, (kind, message, text)


@pytest.mark.parametrize("kind", ["rude", "off_topic", "repetitive"])
def test_poor_rewrites_score_well_below_polite_ones(kind):
    worst_polite = min(politeness(m, t) for m, t in whole(rewrites("polite")))
    assert max(politeness(m, t) for m, t in rewrites(kind)) <= worst_polite - 0.3


def test_politeness_wants_the_content_kept():
    message = "Fix the report now."
    assert politeness(message, "Could you please fix the report when you have a moment? Thank you!") == 1.0
    assert politeness(message, "Could you please sign the invoice when you have a moment? Thank you!") < POL.accept
    assert politeness(message, "Would you mind fixing the report today if possible? Thanks a lot.") == 1.0
    assert politeness(message, "Could you please fix the report, idiot? Thank you!") < 0.6
    assert politeness(message, "Could you please fix the report when you have a moment? Thank you") < POL.accept


def test_content_is_read_from_any_message():
    """Not only the corpus's words: an everyday message's content words, kept in any form."""
    message = "call the plumber, the sink leaks again, idiot"
    assert content_words(message) == ["call", "plumber", "sink", "leaks"]
    assert content_kept(message, "Could you please call the plumber? The sink is leaking.") == 1.0
    assert content_kept(message, "Could you please call someone?") == 0.25
    assert content_kept("Where is it?", "Anything.") == 1.0  # nothing to keep


def test_fidelity_keeps_the_content_and_makes_nothing_up():
    message = "tell Maria the party is cancelled"
    assert fidelity(message, "Could you please tell Maria the party is cancelled? Thank you!") == FID.max_score
    assert fidelity(message, "Tell Maria the party is cancelled.") == FID.max_score  # politeness does not matter
    assert fidelity(message, "Tell Maria the wedding is cancelled.") < FID.accept  # one word made up, one lost
    assert fidelity(message, "Tell Maria the party is cancelled, dummy.") < FID.accept
    assert fidelity(message, "The weather is nice today.") <= 0.1
    assert fidelity(message, "Maria Maria Maria party.") <= 0.1


def test_well_formed():
    assert well_formed("Could you fix the report? Thanks.")
    assert well_formed("Fix it.")
    assert not well_formed("Fix.")  # one word
    assert not well_formed("Could you fix the report")  # no sentence end
    assert not well_formed("Please please please fix it.")  # a word 3 times in a row
    assert not well_formed("Bug bug bug bug.")
    assert not well_formed("Could you fix the rep\ufffd.")  # debris
    assert not well_formed("Fix the report <pad>.")
    assert not well_formed("")
    assert well_formed("Could you fix the report? Thanks.", truncated=True)
    assert not well_formed("Could you fix the report? Thank", truncated=True)


def test_brevity_prefers_short_well_formed_text_that_keeps_the_content():
    message = "Just fix the report already."
    short, polite = "Fix the report.", "Could you please fix the report when you have a moment? Thank you!"
    assert brevity(message, short) == BRE.max_score
    assert brevity(message, short) >= brevity(message, "Fix the report today.") > brevity(message, polite)
    assert brevity(message, polite) < BRE.accept <= brevity(message, short)
    assert brevity(message, "Fix it.") < BRE.accept  # short, but the object is gone
    assert brevity(message, "Fix the report") == 0.0  # not well-formed
    assert brevity(message, "Fix the report, idiot.") < BRE.accept
    assert brevity(message, "I had pasta for lunch.") < BRE.accept
    rng = random.Random(1)
    for _ in range(200):
        message, slots = make_message(rng)
        if extra_words(slots["core"]) <= BREVITY_EXTRA + 2:  # a long two-clause message is not brief unchanged
            assert brevity(message, make_rewrite("echo", slots, rng)) >= BRE.accept, message  # the message itself
    for kind in ("off_topic", "repetitive"):
        for message, text in rewrites(kind):
            assert brevity(message, text) < BRE.accept, (kind, message, text)


def test_the_judges_disagree():
    message = "Send the invoice today, idiot."
    short, polite = "Send the invoice.", "Could you please send the invoice today if possible? Thank you!"
    assert politeness(message, polite) > politeness(message, short)
    assert brevity(message, short) > brevity(message, polite)
    assert POL.good(message, polite) and not POL.good(message, short)
    assert BRE.good(message, short) and not BRE.good(message, polite)
    assert FID.good(message, polite) and FID.good(message, short)  # both keep the content
    # Over the corpus's polite rewrites, brevity accepts few (only the shortest template, on short messages).
    polite_rows = whole(rewrites("polite"))
    assert sum(BRE.good(m, t) for m, t in polite_rows) < 0.1 * len(polite_rows)
    assert all(FID.good(m, t) for m, t in polite_rows)


def test_the_also_fine_rate_is_none_accept_or_a_chance():
    import argparse

    from bench.loop import also_good_rate

    assert [also_good_rate(v) for v in ("none", "accept", "0.25")] == ["none", "accept", "0.25"]
    for bad in ("some", "1.5", "-0.1"):
        with pytest.raises(argparse.ArgumentTypeError):
            also_good_rate(bad)


def test_the_simulated_annotator_answers_all_bad_when_nothing_passes():
    """It used to pick the best of three bad candidates, a pair that teaches nothing good."""
    from bench.loop import answer_for

    rng = random.Random(0)
    assert answer_for([(0.5, 1), (0.7, 2), (0.2, 3)], POL, rng) == ({"verdict": "all_bad"}, "all_bad")
    assert answer_for([(0.5, 1), (0.7, 2), (0.2, 3)], POL, rng, all_bad="pick") == ({"candidate_id": 2}, "choice")
    assert answer_for([(0.95, 1), (1.0, 2), (0.2, 3)], POL, rng, also_good="accept") == (
        {"candidate_id": 2, "also_good": [1]}, "choice")
    assert answer_for([(1.0, 1), (1.0, 2), (1.0, 3)], POL, rng, all_tie="tie") == ({"verdict": "tie"}, "tie")
    # A person marks some of the acceptable others, not all: at a rate, about that share of them, never a bad one.
    marks = [answer_for([(0.95, 1), (1.0, 2), (0.9, 3), (0.2, 4)], POL, rng, also_good="0.3")[0]["also_good"]
             for _ in range(2000)]
    share = sum(len(m) for m in marks) / (2 * len(marks))
    assert 0.27 < share < 0.33 and not any(4 in m or 2 in m for m in marks)
    assert answer_for([(0.95, 1), (1.0, 2), (0.2, 3)], POL, rng, also_good="0")[0] == {"candidate_id": 2}
    body, kind = answer_for([(0.1, 1), (0.1, 2), (0.1, 3)], POL, rng, noise=1.0)
    assert kind == "choice noisy" and body["candidate_id"] in (1, 2, 3)


@pytest.mark.parametrize(("text", "cut", "parts"), [
    ("Please send the report now.", False, []),
    ("Could you please send the", True, ["does not end a sentence", "cut off mid-word at the token limit"]),
    ("Could you please send the", False, ["does not end a sentence"]),
    ("Ok.", False, ["fewer than 2 words"]),
    ("Please fix it \ufffd.", False, ["a character nobody writes"]),
    ("Fix it it it now.", False, ["a word 3 times in a row"]),
    ("Could you please need the invoice?", False, ["a spliced frame"]),
])
def test_each_way_of_not_being_well_formed_is_named_on_its_own(text, cut, parts):
    assert [name for name, fails in MALFORMED.items() if fails(text, cut)] == parts
    assert well_formed(text, truncated=cut) == (not parts)
