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
# Message shapes: {v} verb, {n} {n2} nouns, {a} {a2} adjectives, {name}, {when}; and what people type that no word
# list has, generated so no everyday message can be among them: {who} a name never seen, {num} a number or code,
# {time} a clock time or day, {place} a room, floor or street. Requests come first: a polite frame fits only them
# ("Could you please {v} the {n}?"); a statement or question is wrapped instead, never spliced
# ("Could you please you never ...").
REQUEST_SHAPES = [
    "{v} the {n}", "{v} my {n}", "{v} the {n} and the {n2}", "{v} the {n}, the {n2} is {a} again",
    "{v} the {n}, it is {a}", "{v} {name} about the {n}", "{v} the {n} before {when}", "{v} the {n} for {name}",
    "{v} your {n}, the {n2} is full", "stop it with the {n}", "get the {n} from the {n2}", "{v} it, the {n} is {a}",
    "just {v} the {n} already", "{v} the {a} {n}", "go {v} the {n} with {name}", "tell {name} the {n} is {a}",
    "{v} the {n} by {time}", "{v} {who} the {num} {n}", "{v} the {n} in {place}", "{v} {num} {n} for {who}",
    "{v} the {n} to {place} before {time}", "{v} the {n} from {who} by {time}",
]
OTHER_SHAPES = [
    "your {n} was {a} and way too {a2}", "where is my {n}? {v} it back", "you never {v} the {n}",
    "don't {v} my {n}", "the {n} is {a}, {v} it", "why is the {n} still {a}", "I need the {n} {when}",
    "the {n} is {a} and the {n2} is {a2}", "{name} wants the {n} {when}", "{n} and {n2}, {v} them",
    "where did you put the {n}", "the {n} again? {v} it", "{who} still owes me {num}",
    "the {n} in {place} is {a} again", "why is {place} still {a}", "{who} wants {num} {n} by {time}",
    "the {num} {n} are {a}", "I need {num} {n} by {time}", "where is the {n} {who} left in {place}",
]
SHAPES = REQUEST_SHAPES + OTHER_SHAPES
SYLLABLES = ("ka", "lo", "mi", "ren", "to", "sa", "vi", "dor", "an", "el", "ju", "mar", "ni", "os", "pe", "ra", "su",
             "tan", "be", "ko", "li", "mu", "ze", "ha", "fe", "gi", "no", "ul", "ya", "wen", "tsi", "bra", "quo")
ACCENTS = {"e": "é", "u": "ü", "o": "ö", "a": "á", "n": "ñ", "i": "í"}
DAYS = ("tuesday", "wednesday", "thursday", "saturday", "sunday")  # not monday: bench/copying.py holds it out
MONTHS = ("jan", "feb", "march", "april", "may", "june", "july", "aug", "sept", "oct", "nov", "dec")
EMOJI = ("🙂", "👍", "🙏", "😅", "🔥", "☕", "🎉", "😡", "🙄")
THREAT_TAILS = (". I'm not asking twice", ", or else")
POLITE = ["Could you please {c}? Thank you!", "{C}, please. Thank you!", "Would you kindly {c}? Thanks a lot.",
          "Sorry to bother you, but please {c}. Thank you.", "When you have a moment, please {c}. Many thanks.",
          "{C}, if you don't mind. Thanks!", "I would appreciate it if you could {c}. Thank you."]
# For statements and questions: the message kept whole, the politeness around it.
POLITE_WRAP = ["Sorry to bother you, but {c}. Thank you.", "{C}. Please, and thank you!",
               "Sorry to bother you: {c}. Thanks a lot."]
POLITE_QUESTION = ["Sorry to bother you, but {c}? Thank you!", "Sorry to bother you: {c}? Thanks a lot."]
TERSE = ["{C}.", "{C}, please.", "Please {c}."]
RUDE = ["{C}, {insult}.", "{C}. Now.", "Just {c}, {insult}."]
# "short": the message without its articles and possessives ("Quote for roof repair is way too high."), for trials of
# a starter that offers shorter rewrites than people write (bench/copy_trial.py --mix ...,short=.10). Not in MIX:
# without it the starter never samples a rewrite shorter than the message, so no click can pick one. At a tenth of
# the corpus it opened those messages to brevity but lost on the rest and on politeness (docs/BENCHMARKS.md).
DETERMINERS = {"the", "a", "an", "my", "your", "our", "his", "her", "their", "its"}
# Mixed quality on purpose: preferences must have room to improve the starter. "echo" is the message unchanged (the
# plainest copy, and no more polite than it was); off-topic and repetitive rewrites keep none or little of it. At a
# tenth each they made a fifth of the starter's samples keep nothing (docs/BENCHMARKS.md); at a twentieth each the
# loop still sees them.
MIX = [("polite", 0.30), ("terse", 0.20), ("rude", 0.15), ("echo", 0.25), ("off_topic", 0.05),
       ("repetitive", 0.05)]
# bench/copying.py's content words (and their forms): kept out so that benchmark measures copying of unseen words.
EVERYDAY = {"plumber", "sink", "leaks", "leak", "presentation", "boring", "drill", "feed", "dog", "parking", "park",
            "driveway", "pick", "kids", "water", "plants", "plant", "answer", "email", "trash", "stinks", "stink",
            "move", "car", "garage", "maria", "party", "cancelled", "cancel", "buy", "milk", "eggs", "egg", "music",
            "sleep", "forgot", "forget", "lock", "door", "ladder", "borrowed", "borrow", "printer", "jammed", "jam",
            "walk", "pay", "rent", "monday", "wash", "dishes", "dish", "grandma", "waiting", "wait"}
POLITE_WORDS = {"please", "thank", "thanks", "appreciate", "kindly", "bother", "sorry", "mind"}
_WORD = re.compile(r"[a-z]{3,12}")


def held_out(word: str) -> bool:
    """A tenth of the word list, chosen by a stable hash, never appears in the corpus."""
    return int(hashlib.sha1(word.encode()).hexdigest(), 16) % 10 == 0


@cache
def _usable_words() -> dict[str, tuple[str, ...]]:
    """{"verbs", "nouns", "adjs"}: the wonderwords lists, plain lower-case words only, less EVERYDAY and the words
    that mark politeness ("thank the drain" made a terse rewrite polite)."""
    from wonderwords import RandomWord, filter_profanity

    words = RandomWord()
    return {key: tuple(w for w in filter_profanity(words.filter(include_categories=[category]))
                       if _WORD.fullmatch(w) and w not in EVERYDAY | POLITE_WORDS)
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


def make_name(rng: random.Random) -> str:
    """A name nobody has taught the starter: two or three syllables, now and then with an accent."""
    name = "".join(rng.choice(SYLLABLES) for _ in range(rng.choice((2, 2, 3))))
    if rng.random() < 0.15:
        i = rng.randrange(len(name))
        name = name[:i] + ACCENTS.get(name[i], name[i]) + name[i + 1:]
    return name.capitalize()


def make_number(rng: random.Random) -> str:
    """A count, sum, share, ticket, quarter or code, as people type them."""
    n = rng.choice((rng.randint(2, 12), rng.randint(10, 99), rng.randint(100, 9999)))
    upper = "".join(rng.choice("ABCDEFGHJKLMNPRSTVWXZ") for _ in range(rng.randint(1, 3)))
    return rng.choice((str(n), str(n), f"${n}", f"{n}%", f"#{n}", f"Q{rng.randint(1, 4)}", f"{n}{upper[0]}",
                       f"{upper}-{n}", f"{n:,}", f"v{rng.randint(1, 9)}.{rng.randint(0, 12)}"))


def make_time(rng: random.Random) -> str:
    """A clock time, a day or a date."""
    hour = rng.randint(1, 12)
    return rng.choice((f"{hour}pm", f"{hour}am", f"{hour}:{rng.choice(('00', '15', '30', '45'))}",
                       f"{hour} {rng.choice(('am', 'pm'))}", rng.choice(DAYS).capitalize(), rng.choice(DAYS),
                       f"{rng.choice(MONTHS).capitalize()} {rng.randint(1, 28)}", f"the {rng.randint(1, 28)}th"))


def make_place(rng: random.Random, lists: dict) -> str:
    """A room, floor, gate or street."""
    return rng.choice((f"room {make_number(rng)}", f"floor {rng.randint(1, 30)}", f"gate {rng.randint(1, 60)}",
                       f"{make_name(rng)} Street", f"the {rng.choice(lists['nouns'])} office", make_name(rng)))


def with_typo(word: str, rng: random.Random) -> str:
    """The word with two neighbouring letters swapped, as fast typing does."""
    if len(word) < 4:
        return word
    i = rng.randrange(1, len(word) - 2)
    return word[:i] + word[i + 1] + word[i] + word[i + 2:]


def make_core(rng: random.Random, lists: dict, shapes: list[str]) -> tuple[str, dict]:
    """One clause from a shape, its slots filled; a slot word is now and then mistyped."""
    slots = {"v": rng.choice(lists["verbs"]), "n": rng.choice(lists["nouns"]), "n2": rng.choice(lists["nouns"]),
             "a": rng.choice(lists["adjs"]), "a2": rng.choice(lists["adjs"]), "name": rng.choice(NAMES),
             "when": rng.choice(WHEN), "insult": rng.choice(INSULTS), "who": make_name(rng),
             "num": make_number(rng), "time": make_time(rng), "place": make_place(rng, lists)}
    if rng.random() < 0.1:
        key = rng.choice(("v", "n", "n2", "a", "a2"))
        slots[key] = with_typo(slots[key], rng)
    shape = rng.choice(shapes)
    return shape.format(**slots), {**slots, "request": shape not in OTHER_SHAPES}


def make_message(rng: random.Random, *, lists: dict | None = None, shapes: list[str] = SHAPES) -> tuple[str, dict]:
    """One blunt message and its slots ("core" is the part every faithful rewrite copies, a trailing time included;
    a threat, an insult or an emoji after it is not)."""
    lists = lists or word_lists()
    core, slots = make_core(rng, lists, shapes)
    if rng.random() < 0.2:  # two clauses: people put a reason or a second request in one message
        second, _ = make_core(rng, lists, shapes)
        # Not " and " twice in a row: "the x is a and the y is b and ..." is a list, not a message.
        joiners = (", ", ". ", ", then ") if " and " in core + second else (", ", ". ", " and ", ", then ")
        core = core + rng.choice(joiners) + second
    if rng.random() < 0.1:
        core = core.lower()
    elif rng.random() < 0.5:
        core = core[0].upper() + core[1:]
    r = rng.random()
    # A trailing time is what was asked ("... by noon"), so it is part of the core: rewrites that dropped it taught
    # the starter to drop a message's end. An insult or a threat after it is still left out.
    if r < 0.2:
        core += f" {rng.choice(WHEN)}"
    tail = ("" if r < 0.2 else f", {slots['insult']}" if r < 0.35 else rng.choice(THREAT_TAILS) if r < 0.42 else "")
    question = core.endswith("?") or core.split()[0].lower() in ("where", "why")
    end = ("?" if not core.endswith("?") else "") if question else rng.choice([".", "!", "", "?", "."])
    emoji = f" {rng.choice(EMOJI)}" if rng.random() < 0.05 else ""
    return core + tail + end + emoji, {**slots, "core": core, "question": question}


def make_rewrite(kind: str, slots: dict, rng: random.Random) -> str:
    """One rewrite of the given quality; all but off-topic and repetitive copy the message's core verbatim."""
    core = slots["core"].rstrip("?")
    first = core.split()[0]
    c = core if first in NAMES or first == "I" or first[0].isupper() and slots.get("who") == first \
        else core[0].lower() + core[1:]  # mid-sentence: "please fix ..."
    fill = {"c": c, "C": c[0].upper() + c[1:], "insult": rng.choice(INSULTS)}
    request = slots.get("request", True)
    if kind == "polite":
        forms = POLITE if request else POLITE_QUESTION if slots.get("question") else POLITE_WRAP
        return rng.choice(forms).format(**fill)
    if kind == "terse":
        return rng.choice(TERSE if request else ["{C}?" if slots.get("question") else "{C}."]).format(**fill)
    if kind == "rude":
        if request:
            return rng.choice(RUDE).format(**fill)
        return f"{fill['C']}? {fill['insult'].capitalize()}." if slots.get("question") else f"{fill['C']}. Now."
    if kind == "echo":
        return fill["C"] + ("?" if slots.get("question") else ".")
    if kind == "short":
        kept = " ".join(w for w in c.split() if w.lower() not in DETERMINERS) or c
        return kept[0].upper() + kept[1:] + ("?" if slots.get("question") else ".")
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
