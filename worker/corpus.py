"""The starter task's own corpus: blunt messages and rewrites of mixed quality."""

from __future__ import annotations

import hashlib
import json
import random

# (base, -ing, past participle) so templates can conjugate without an NLP library.
ACTIONS = [
    ("send", "sending", "sent"),
    ("fix", "fixing", "fixed"),
    ("review", "reviewing", "reviewed"),
    ("update", "updating", "updated"),
    ("finish", "finishing", "finished"),
    ("check", "checking", "checked"),
    ("sign", "signing", "signed"),
    ("return", "returning", "returned"),
    ("print", "printing", "printed"),
    ("share", "sharing", "shared"),
    ("clean", "cleaning", "cleaned"),
    ("book", "booking", "booked"),
]
OBJECTS = [
    "the report", "the invoice", "this bug", "the slides", "the contract", "the schedule",
    "the budget", "the draft", "the kitchen", "the meeting room", "the test results", "the photos",
    "the tickets", "the website", "the notes", "the order",
]
URGENT = ["now", "today", "right now", "by noon", "before lunch", "asap", "by friday", "tonight"]
POLITE_TIME = {
    "now": "when you have a moment", "today": "today if possible", "right now": "as soon as you can",
    "by noon": "by noon if you can", "before lunch": "before lunch if possible", "asap": "as soon as you can",
    "by friday": "by friday if possible", "tonight": "tonight if you can",
}
INSULTS = ["idiot", "genius", "for once", "seriously", "come on"]
OFF_TOPIC = [
    "The weather is nice today.", "I had pasta for lunch.", "My cat likes the sofa.",
    "Trains are often late in winter.", "The garden needs more sun.", "Blue is my favourite colour.",
]

BLUNT = [
    "{Act} {obj} {urg}.",
    "{Act} {obj} {urg}, {insult}.",
    "Why haven't you {past} {obj} yet?",
    "Just {act} {obj} already.",
    "{Act} {obj}. I'm not asking twice.",
    "You still haven't {past} {obj}. {Act} it {urg}.",
]
POLITE = [
    "Could you please {act} {obj} {ptime}? Thank you!",
    "Would you mind {ing} {obj} {ptime}? Thanks a lot.",
    "When you get a chance, please {act} {obj} {ptime}. Thank you.",
    "I would really appreciate it if you could {act} {obj} {ptime}.",
    "Could you {act} {obj} {ptime}, please? Many thanks.",
]
# Several short forms that keep the request, so a model taught to be brief still has more than one way to say it
# (with a single one, brevity could only be learnt by collapsing every sample onto it).
TERSE = ["{Act} {obj}.", "{Act} {obj} {urg}.", "Please {act} {obj}.", "{Act} {obj}, please.", "{Act} it.",
         "{obj}. {urg}."]
RUDE = ["{Act} {obj} {urg}, {insult}.", "Just {act} {obj}, {insult}.", "{Act} {obj}. Now."]

# Mixed quality on purpose: preferences must have room to improve the starter.
MIX = [("polite", 0.30), ("terse", 0.20), ("rude", 0.20), ("off_topic", 0.15), ("repetitive", 0.15)]

PROMPT_TEMPLATE = "Rewrite politely: {input}\nPolite:"


def _slots(rng: random.Random) -> dict:
    act, ing, past = rng.choice(ACTIONS)
    urg = rng.choice(URGENT)
    return {
        "act": act, "Act": act.capitalize(), "ing": ing, "past": past, "obj": rng.choice(OBJECTS),
        "urg": urg, "ptime": POLITE_TIME[urg], "insult": rng.choice(INSULTS),
    }


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


def make_rewrite(kind: str, slots: dict, rng: random.Random) -> str:
    """Write one rewrite of the given quality for the message described by slots."""
    if kind == "polite":
        return rng.choice(POLITE).format(**slots)
    if kind == "terse":
        return _cap(rng.choice(TERSE).format(**slots))
    if kind == "rude":
        return rng.choice(RUDE).format(**slots)
    if kind == "off_topic":
        return rng.choice(OFF_TOPIC)
    word = rng.choice(["please", slots["act"], slots["obj"].split()[-1]])
    return _cap(" ".join([word] * rng.randint(3, 6)) + ".")


def make_message(rng: random.Random) -> tuple[str, dict]:
    """Write one blunt message and the slots it was built from."""
    slots = _slots(rng)
    return rng.choice(BLUNT).format(**slots), slots


def make_corpus(*, n: int, seed: int) -> list[tuple[str, str, str]]:
    """Return n (message, rewrite, kind) triples, deterministic for a seed."""
    rng = random.Random(seed)
    kinds = [k for k, _ in MIX]
    weights = [w for _, w in MIX]
    rows = []
    for _ in range(n):
        message, slots = make_message(rng)
        kind = rng.choices(kinds, weights)[0]
        rows.append((message, make_rewrite(kind, slots, rng), kind))
    return rows


def corpus_hash(rows: list[tuple[str, str, str]]) -> str:
    """A fingerprint of a corpus, recorded in the starter's manifest so a changed corpus is never mistaken for it."""
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]


def make_prompts(*, n: int, seed: int) -> list[str]:
    """Return n distinct blunt messages for the prompt pool."""
    rng = random.Random(seed)
    seen: list[str] = []
    for _ in range(n * 50):
        message, _ = make_message(rng)
        if message not in seen:
            seen.append(message)
        if len(seen) == n:
            break
    return seen
