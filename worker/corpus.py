"""The starter task's own corpus: blunt messages made of real English words, and rewrites of mixed quality.

A starter trained on 12 verbs and 16 objects answered every other message with its own words ("Please please.").
So the slots here are filled from a large word list (wonderwords: ~6,800 nouns, ~1,000 verbs, ~900 adjectives)
in many message shapes, and the polite, terse, rude and unchanged rewrites carry the message's core over verbatim:
predicting them takes copying, not memorising (docs/BENCHMARKS.md, "The starter on messages it never saw").

Held out of it, so copying can be measured on words it never saw: a tenth of every list by a stable hash
(`held_out_words`), and the content words of bench/copying.py's everyday messages (EVERYDAY).
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from functools import cache

PROMPT_TEMPLATE = "Rewrite politely: {input}\nPolite:"

NAMES = ["Anna", "Ben", "Carlos", "Dana", "Eli", "Fatima", "George", "Hana", "Ivan", "Julia", "Kofi", "Lena", "Marco",
         "Nina", "Omar", "Priya", "Quinn", "Rosa", "Sam", "Tom", "Uma", "Victor", "Wei", "Yara", "Zoe", "mom", "dad",
         "the boss", "the landlord", "your brother", "the neighbours", "the team"]
WHEN = ["now", "today", "right now", "by noon", "asap", "tonight", "by friday", "this morning", "before lunch",
        "at five", "tomorrow", "this week"]
INSULTS = ["idiot", "genius", "for once", "seriously", "come on", "you clown", "dummy", "honestly"]
OFF_TOPIC = ["The weather is nice today.", "I had pasta for lunch.", "My cat likes the sofa.",
             "Trains are often late in winter.", "The garden needs more sun.", "Blue is my favourite colour.",
             "I think it might rain later.", "Coffee tastes better at home."]
# Message shapes: {v} verb, {n} {n2} nouns, {a} {a2} adjectives, {name}, {when}.
SHAPES = [
    "{v} the {n}", "{v} my {n}", "{v} the {n} and the {n2}", "{v} the {n}, the {n2} is {a} again",
    "{v} the {n}, it is {a}", "your {n} was {a} and way too {a2}", "where is my {n}? {v} it back",
    "you never {v} the {n}", "don't {v} my {n}", "tell {name} the {n} is {a}", "{v} {name} about the {n}",
    "the {n} is {a}, {v} it", "why is the {n} still {a}", "{v} the {n} before {when}", "I need the {n} {when}",
    "{v} the {n} for {name}", "the {n} is {a} and the {n2} is {a2}", "{v} your {n}, the {n2} is full",
    "stop it with the {n}", "{name} wants the {n} {when}", "get the {n} from the {n2}", "{v} it, the {n} is {a}",
    "{n} and {n2}, {v} them", "where did you put the {n}", "just {v} the {n} already",
    "{v} the {n}. I'm not asking twice", "the {n} again? {v} it", "{v} the {a} {n}", "go {v} the {n} with {name}",
]
POLITE = ["Could you please {c}? Thank you!", "{C}, please. Thank you!", "Would you kindly {c}? Thanks a lot.",
          "Sorry to bother you, but please {c}. Thank you.", "When you have a moment, please {c}. Many thanks.",
          "{C}, if you don't mind. Thanks!", "I would appreciate it if you could {c}. Thank you."]
TERSE = ["{C}.", "{C}, please.", "Please {c}."]
RUDE = ["{C}, {insult}.", "{C}. Now.", "Just {c}, {insult}."]
# Mixed quality on purpose: preferences must have room to improve the starter. "echo" is the message unchanged (the
# plainest copy, and no more polite than it was); off-topic and repetitive rewrites keep none or little of it.
MIX = [("polite", 0.30), ("terse", 0.20), ("rude", 0.15), ("echo", 0.15), ("off_topic", 0.10),
       ("repetitive", 0.10)]
# bench/copying.py's content words (and their forms): kept out so that benchmark measures copying of unseen words.
EVERYDAY = {"plumber", "sink", "leaks", "leak", "presentation", "boring", "drill", "feed", "dog", "parking", "park",
            "driveway", "pick", "kids", "water", "plants", "plant", "answer", "email", "trash", "stinks", "stink",
            "move", "car", "garage", "maria", "party", "cancelled", "cancel", "buy", "milk", "eggs", "egg", "music",
            "sleep", "forgot", "forget", "lock", "door", "ladder", "borrowed", "borrow", "printer", "jammed", "jam",
            "walk", "pay", "rent", "monday", "wash", "dishes", "dish", "grandma", "waiting", "wait"}
_WORD = re.compile(r"[a-z]{3,12}")


def held_out(word: str) -> bool:
    """A tenth of the word list, chosen by a stable hash, never appears in the corpus."""
    return int(hashlib.sha1(word.encode()).hexdigest(), 16) % 10 == 0


@cache
def _usable_words() -> dict[str, tuple[str, ...]]:
    """{"verbs", "nouns", "adjs"}: the wonderwords lists, plain lower-case words only, less EVERYDAY."""
    from wonderwords import RandomWord, filter_profanity

    words = RandomWord()
    return {key: tuple(w for w in filter_profanity(words.filter(include_categories=[category]))
                       if _WORD.fullmatch(w) and w not in EVERYDAY)
            for key, category in (("verbs", "verb"), ("nouns", "noun"), ("adjs", "adjective"))}


@cache
def word_lists() -> dict[str, tuple[str, ...]]:
    """The words the corpus uses: every usable word but the held-out tenth."""
    return {key: tuple(w for w in words if not held_out(w)) for key, words in _usable_words().items()}


@cache
def held_out_words() -> dict[str, tuple[str, ...]]:
    """The held-out tenth of each list, less the corpus's fixed words: words the starter never saw."""
    fixed = set(_WORD.findall(" ".join(SHAPES + POLITE + TERSE + RUDE + OFF_TOPIC + NAMES + WHEN + INSULTS).lower()))
    return {key: tuple(w for w in words if held_out(w) and w not in fixed) for key, words in _usable_words().items()}


def make_message(rng: random.Random, *, lists: dict | None = None, shapes: list[str] = SHAPES) -> tuple[str, dict]:
    """One blunt message and its slots ("core" is the part every faithful rewrite copies)."""
    lists = lists or word_lists()
    slots = {"v": rng.choice(lists["verbs"]), "n": rng.choice(lists["nouns"]), "n2": rng.choice(lists["nouns"]),
             "a": rng.choice(lists["adjs"]), "a2": rng.choice(lists["adjs"]), "name": rng.choice(NAMES),
             "when": rng.choice(WHEN), "insult": rng.choice(INSULTS)}
    core = rng.choice(shapes).format(**slots)
    if rng.random() < 0.5:
        core = core[0].upper() + core[1:]
    r = rng.random()
    tail = f" {rng.choice(WHEN)}" if r < 0.25 else f", {slots['insult']}" if r < 0.45 else ""
    question = core.endswith("?") or core.split()[0].lower() in ("where", "why")
    end = ("?" if not core.endswith("?") else "") if question else rng.choice([".", "!", "", "?", "."])
    return core + tail + end, {**slots, "core": core}


def make_rewrite(kind: str, slots: dict, rng: random.Random) -> str:
    """One rewrite of the given quality; all but off-topic and repetitive copy the message's core verbatim."""
    core = slots["core"].rstrip("?")
    first = core.split()[0]
    c = core if first in NAMES or first == "I" else core[0].lower() + core[1:]  # mid-sentence: "please fix ..."
    fill = {"c": c, "C": c[0].upper() + c[1:], "insult": rng.choice(INSULTS)}
    if kind == "polite":
        return rng.choice(POLITE).format(**fill)
    if kind == "terse":
        return rng.choice(TERSE).format(**fill)
    if kind == "rude":
        return rng.choice(RUDE).format(**fill)
    if kind == "echo":
        return fill["C"] + "."
    if kind == "off_topic":
        return rng.choice(OFF_TOPIC)
    word = rng.choice(["please", slots["n"], slots["v"]])
    text = " ".join([word] * rng.randint(3, 6)) + "."
    return text[0].upper() + text[1:]


def make_corpus(*, n: int, seed: int, mix: list[tuple[str, float]] = MIX) -> list[tuple[str, str, str]]:
    """Return n (message, rewrite, kind) triples, deterministic for a seed (mix: for trials of other shares)."""
    rng = random.Random(seed)
    kinds, weights = [k for k, _ in mix], [w for _, w in mix]
    rows = []
    for _ in range(n):
        message, slots = make_message(rng)
        kind = rng.choices(kinds, weights)[0]
        rows.append((message, make_rewrite(kind, slots, rng), kind))
    return rows


def corpus_hash(rows: list[tuple[str, str, str]]) -> str:
    """A fingerprint of a corpus, recorded in the starter's manifest so a changed corpus is never mistaken for it."""
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]


def make_prompts(*, n: int, seed: int, lists: dict | None = None, shapes: list[str] = SHAPES) -> list[str]:
    """Return up to n distinct blunt messages for the prompt pool (other words or shapes: see make_message)."""
    rng = random.Random(seed)
    seen: dict[str, None] = {}
    for _ in range(n * 50):
        seen.setdefault(make_message(rng, lists=lists, shapes=shapes)[0])
        if len(seen) == n:
            break
    return list(seen)
