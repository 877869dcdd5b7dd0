"""Simulated annotators' taste: plain functions `score(prompt_input, candidate) -> float` for bench/loop.py.

Each judge is a `Judge`: its score function, the acceptance line (a sample scoring at or above it is "good") and
the highest score it can give (for the win-rate ceiling). Two judges ship, and they disagree on purpose:

- politeness: the starter task's intent (worker/corpus.py). Polite markers (please, could you, would you,
  thank, ...), keeps the content (the action verb, in any form, and the object of the input), no insult
  (worker.corpus.INSULTS), not off-topic, well-formed, not repetitive. Good = well-formed, on topic, no insult,
  verb and object kept, and at least two polite markers (every POLITE template of the corpus has two or more).
- brevity: short but well-formed and keeping the content. Good = well-formed, no insult, verb and object kept,
  and at most about six words. It prefers "Fix the report." to any polite rewrite.

`well_formed(text)` is the shared health check (also the loop's well-formed rate).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from worker.corpus import ACTIONS, INSULTS, OBJECTS, OFF_TOPIC

SENTENCE_END = (".", "!", "?")
# Letters, digits, whitespace and ordinary punctuation; anything else (byte-level debris, U+FFFD) is not sensible.
_SENSIBLE = re.compile(r"^[A-Za-z0-9\s.,!?'\"’:;()\-]+$")
_WORD = re.compile(r"[a-z0-9']+")

POLITE_MARKERS = (
    "please", "could you", "would you", "thank", "appreciate", "if possible", "if you can", "when you get a chance",
    "when you have a moment", "as soon as you can", "kindly",
)


def words(text: str) -> list[str]:
    """Lower-case words without punctuation."""
    return _WORD.findall(text.lower())


def max_run(tokens: list[str]) -> int:
    """The longest run of one word repeated back to back."""
    best, run = 0, 0
    for i, token in enumerate(tokens):
        run = run + 1 if i and token == tokens[i - 1] else 1
        best = max(best, run)
    return best


def well_formed(text: str, *, truncated: bool = False) -> bool:
    """Ends with sentence punctuation, only sensible characters, no word 3+ times in a row, at least 2 words,
    and not cut off mid-word (truncated: generation stopped at max tokens rather than at the end token)."""
    text = text.strip()
    if not text or not _SENSIBLE.match(text):
        return False
    if truncated and text[-1].isalnum():
        return False
    if not text.endswith(SENTENCE_END):
        return False
    tokens = words(text)
    return len(tokens) >= 2 and max_run(tokens) < 3


def repetitive(text: str) -> bool:
    """Back-to-back repeats (3+), or one two-word phrase said three times anywhere."""
    tokens = words(text)
    if max_run(tokens) >= 3:
        return True
    bigrams = list(zip(tokens, tokens[1:], strict=False))
    return any(bigrams.count(b) >= 3 for b in set(bigrams))


def content(prompt_input: str) -> tuple[tuple[str, ...] | None, str | None]:
    """The action (all its forms) and the object the input asks about, from the starter task's vocabulary.

    Outside that vocabulary (a free-form input) both are None and the content checks pass trivially."""
    tokens = set(words(prompt_input))
    action = next((forms for forms in ACTIONS if tokens & set(forms)), None)
    low = prompt_input.lower()
    obj = max((o for o in OBJECTS if re.search(rf"\b{re.escape(o)}\b", low)), key=len, default=None)
    return action, obj


def keeps_verb(prompt_input: str, candidate: str) -> bool:
    action, _ = content(prompt_input)
    return action is None or bool(set(words(candidate)) & set(action))


def keeps_object(prompt_input: str, candidate: str) -> bool:
    _, obj = content(prompt_input)
    return obj is None or re.search(rf"\b{re.escape(obj)}\b", candidate.lower()) is not None


def has_insult(text: str) -> bool:
    low = text.lower()
    return any(re.search(rf"\b{re.escape(i)}\b", low) for i in INSULTS)


def off_topic(prompt_input: str, candidate: str) -> bool:
    """A stock off-topic line of the corpus, or neither the verb nor the object of the input."""
    if candidate.strip() in OFF_TOPIC:
        return True
    action, obj = content(prompt_input)
    if action is None and obj is None:
        return False
    return not (keeps_verb(prompt_input, candidate) or keeps_object(prompt_input, candidate))


def polite_markers(text: str) -> int:
    """How many distinct polite markers the text uses."""
    low = " ".join(words(text))
    return sum(re.search(rf"\b{re.escape(m)}", low) is not None for m in POLITE_MARKERS)


def politeness(prompt_input: str, candidate: str) -> float:
    """0..1: 0.35 polite markers (two for full marks), 0.2 verb kept, 0.2 object kept, 0.25 well-formed;
    an insult costs 0.5, off-topic or repetitive text scores at most 0.1."""
    text = candidate.strip()
    score = (0.35 * min(polite_markers(text), 2) / 2 + 0.2 * keeps_verb(prompt_input, text)
             + 0.2 * keeps_object(prompt_input, text) + 0.25 * well_formed(text))
    if has_insult(text):
        score -= 0.5
    if off_topic(prompt_input, text) or repetitive(text):
        score = min(score, 0.1)
    return round(max(0.0, min(1.0, score)), 4)


BREVITY_SHORTEST, BREVITY_LONGEST = 3, 12  # words: full marks at 3 ("Fix the report."), none for length at 12+


def brevity(prompt_input: str, candidate: str) -> float:
    """0..1: 0 unless well-formed, insult-free, on topic and not repetitive; then 0.25 verb kept, 0.25 object
    kept, and 0.5 for shortness (linear from 3 words down to 12)."""
    text = candidate.strip()
    if not well_formed(text) or repetitive(text):
        return 0.0
    if has_insult(text) or off_topic(prompt_input, text):
        return 0.1
    n = len(words(text))
    short = min(1.0, max(0.0, (BREVITY_LONGEST - n) / (BREVITY_LONGEST - BREVITY_SHORTEST)))
    score = 0.25 * keeps_verb(prompt_input, text) + 0.25 * keeps_object(prompt_input, text) + 0.5 * short
    return round(score, 4)


@dataclass(frozen=True)
class Judge:
    """A simulated annotator's taste."""

    name: str
    score: Callable[[str, str], float]
    accept: float  # a sample scoring at least this is "good"
    max_score: float = 1.0
    description: str = ""

    def good(self, prompt_input: str, candidate: str) -> bool:
        return self.score(prompt_input, candidate) >= self.accept


JUDGES = {
    "politeness": Judge("politeness", politeness, accept=0.9, description=(
        "well-formed, on topic, no insult, verb and object kept, 2+ polite markers")),
    "brevity": Judge("brevity", brevity, accept=0.8, description=(
        "well-formed, no insult, verb and object kept, at most 6 words")),
}
