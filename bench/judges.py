"""Simulated annotators' taste: plain functions `score(prompt_input, candidate) -> float` for bench/loop.py.

Each judge is a `Judge`: its score function, the acceptance line (a sample scoring at or above it is "good") and
the highest score it can give (for the win-rate ceiling). Three ship, and they disagree on purpose. All three read
the message's content the same way, from the input alone, so they work on any message, not only the corpus's:
its content words are its words less function words, time words, insults and the rewrites' stock phrases
(`content_words`); a candidate keeps one when it has the word in some form (`stem`).

- politeness: the starter task's intent. Polite markers (please, could you, thank, ...), the content kept, no
  insult, not off-topic, well-formed, not repetitive. Good = all that with at least two polite markers and at
  least three quarters of the content words.
- brevity: short but well-formed, insult-free and keeping every content word. It prefers "Fix the report." to any
  polite rewrite.
- fidelity: keeps the message's content and makes nothing up. Good = well-formed, no insult, every content word
  kept and no content word of its own; politeness and length do not matter.

`well_formed(text)` is the shared health check (also the loop's well-formed rate). A splice is not well-formed: a
polite frame around a message it does not fit ("Could you please you never fix the lamp? Thank you!", "Fix the
lamp. I'm not asking twice, please. Thank you!"); the corpus's own rewrites make them, and they scored 1.0 before.
A threat ("I'm not asking twice", "or I will") costs politeness what an insult does.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

from worker.corpus import INSULTS, OFF_TOPIC, WHEN

SENTENCE_END = (".", "!", "?")
# Letters (any script: people write "Zürich" and "Nguyễn"), digits, whitespace, ordinary punctuation and symbols
# (emoji, currency); anything else, and U+FFFD (byte-level debris), is not sensible.
_PUNCTUATION = set(".,!?'\"’:;()-&/%#@+*=")
_WORD = re.compile(r"(?:[^\W_]|')+")

POLITE_MARKERS = (
    "please", "could you", "would you", "thank", "appreciate", "if possible", "if you can", "when you get a chance",
    "when you have a moment", "as soon as you can", "kindly", "if you don't mind", "sorry to bother",
)
# Words that carry no content of their own: function words, and the stock words of rewrites and messages.
FUNCTION_WORDS = set("""
a an the my your our their his her its it it's this that these those them they we you i i'm me he she us
is are was were be been am do does did don't didn't doesn't have has had haven't not no never
and or but so if then than as of to in on at by for with from about into over after before again still just
already way too very much many more most some any all there here where why what when who how which
could would should can will may might must shall please thank thanks thank-you sorry bother moment mind
appreciate kindly lot now today tonight tomorrow asap morning noon lunch week friday five right
get go put tell need wants want give stop it's let let's ok okay yes once twice asking also really else
""".split()) | {w for phrase in (*WHEN, *INSULTS, *POLITE_MARKERS) for w in phrase.split()}


THREATS = ("not asking twice", "or i will", "or else", "i mean it", "last warning")
# A request frame followed by what cannot start a request: a pronoun, an article, a negation, a question word.
_FRAME = r"(?:(?:could|would|can|will) you (?:please |kindly )?|please )"
_NOT_A_VERB = ("you", "i", "i'm", "the", "my", "your", "our", "a", "an", "never", "not", "don't", "where", "why",
               "who", "what", "is", "are", "nobody", "first", "it", "this", "that")
_SPLICE = re.compile(rf"\b{_FRAME}(?:{'|'.join(re.escape(w) for w in _NOT_A_VERB)})\b")
# After "please" or "kindly" a request's verb follows; "need", "must" and the like never do ("could you please need
# the invoice"), although "would you need ..." and "will you need ..." are questions, so the plain frame passes them.
_AFTER_PLEASE = ("need", "needs", "must", "should", "was", "were", "has", "wants", "want")
_PLEASE_SPLICE = re.compile(rf"\b(?:please|kindly) (?:{'|'.join(_AFTER_PLEASE)})\b")


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


# The ways a text is not well-formed, each on its own (text, truncated): well_formed is none of them, and
# bench/failures.py counts which ones a model's samples show.
MALFORMED = {
    "does not end a sentence": lambda t, cut: not t.strip().endswith(SENTENCE_END),
    "cut off mid-word at the token limit": lambda t, cut: cut and t.strip()[-1:].isalnum(),
    "a character nobody writes": lambda t, cut: not all(sensible(c) for c in t.strip()),
    "fewer than 2 words": lambda t, cut: len(words(t)) < 2,
    "a word 3 times in a row": lambda t, cut: max_run(words(t)) >= 3,
    "a spliced frame": lambda t, cut: spliced(t),
}


def well_formed(text: str, *, truncated: bool = False) -> bool:
    """Ends with sentence punctuation, only sensible characters, no word 3+ times in a row, at least 2 words, no
    spliced frame, and not cut off mid-word (truncated: generation stopped at max tokens rather than at the end
    token)."""
    return not any(fails(text, truncated) for fails in MALFORMED.values())


def spliced(text: str) -> bool:
    """A polite frame around words that cannot follow it ("could you please you never ..."), or a threat and a
    polite marker in one sentence ("I'm not asking twice, please.")."""
    joined = " ".join(words(text))
    if _SPLICE.search(joined) or _PLEASE_SPLICE.search(joined):
        return True
    return any(has_threat(sentence) and polite_markers(sentence) for sentence in re.split(r"[.!?]+", text))


def has_threat(text: str) -> bool:
    """Whether the text says one of the corpus's threats."""
    low = " ".join(words(text))
    return any(re.search(rf"\b{re.escape(t)}\b", low) for t in THREATS)


def sensible(char: str) -> bool:
    """A character a person writes: a letter or digit of any script, whitespace, punctuation, or a symbol."""
    if char == "\ufffd":
        return False
    return char.isalnum() or char.isspace() or char in _PUNCTUATION or unicodedata.category(char) in ("So", "Sk", "Sc")


def repetitive(text: str) -> bool:
    """Back-to-back repeats (3+), or one two-word phrase said three times anywhere."""
    tokens = words(text)
    if max_run(tokens) >= 3:
        return True
    bigrams = list(zip(tokens, tokens[1:], strict=False))
    return any(bigrams.count(b) >= 3 for b in set(bigrams))


def stem(word: str) -> str:
    """A crude stem, so "fixing" keeps "fix" and "leaks" keeps "leak"; enough for a judge, not for linguistics."""
    for suffix in ("ing", "ed", "es", "s", "d"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def content_words(text: str) -> list[str]:
    """The words of a message that a faithful rewrite keeps (in order, once each)."""
    return list(dict.fromkeys(w for w in words(text) if len(w) >= 3 and w not in FUNCTION_WORDS))


def content_kept(prompt_input: str, candidate: str) -> float:
    """The share of the input's content words the candidate keeps, in some form (1.0 when it has none)."""
    wanted = content_words(prompt_input)
    if not wanted:
        return 1.0
    have = {stem(w) for w in words(candidate)}
    return sum(stem(w) in have for w in wanted) / len(wanted)


def invented(prompt_input: str, candidate: str) -> list[str]:
    """Content words of the candidate that the input does not have."""
    have = {stem(w) for w in words(prompt_input)}
    return [w for w in content_words(candidate) if stem(w) not in have]


def has_insult(text: str) -> bool:
    low = text.lower()
    return any(re.search(rf"\b{re.escape(i)}\b", low) for i in INSULTS)


def off_topic(prompt_input: str, candidate: str) -> bool:
    """A stock off-topic line of the corpus, or none of the input's content words."""
    if candidate.strip() in OFF_TOPIC:
        return True
    return bool(content_words(prompt_input)) and content_kept(prompt_input, candidate) == 0


def polite_markers(text: str) -> int:
    """How many distinct polite markers the text uses."""
    low = " ".join(words(text))
    return sum(re.search(rf"\b{re.escape(m)}", low) is not None for m in POLITE_MARKERS)


def politeness(prompt_input: str, candidate: str) -> float:
    """0..1: 0.35 polite markers (two for full marks), 0.4 times the share of content kept, 0.25 well-formed;
    an insult or a threat costs 0.5, off-topic or repetitive text scores at most 0.1."""
    text = candidate.strip()
    score = (0.35 * min(polite_markers(text), 2) / 2 + 0.4 * content_kept(prompt_input, text)
             + 0.25 * well_formed(text))
    if has_insult(text) or has_threat(text):
        score -= 0.5
    if off_topic(prompt_input, text) or repetitive(text):
        score = min(score, 0.1)
    return round(max(0.0, min(1.0, score)), 4)


# Words beyond the content words: full marks for length at 2 or fewer ("Fix the report."), none at 10 or more.
BREVITY_EXTRA, BREVITY_LONGEST = 2, 10
BREVITY_DROPPED = 0.75  # the most a text that drops a content word scores: below the 0.8 acceptance line


def brevity(prompt_input: str, candidate: str) -> float:
    """0..1: 0 unless well-formed and not repetitive, 0.1 with an insult or off-topic; then 0.5 times the share of
    content kept, and 0.5 for shortness (the words beyond the content words, linear from 2 down to 10), at most
    BREVITY_DROPPED when a content word is dropped."""
    text = candidate.strip()
    if not well_formed(text) or repetitive(text):
        return 0.0
    if has_insult(text) or off_topic(prompt_input, text):
        return 0.1
    score = brevity_balance(prompt_input, text)
    if content_kept(prompt_input, text) < 1:  # good means every content word kept: one dropped scored 0.833
        score = min(score, BREVITY_DROPPED)
    return round(score, 4)


def brevity_balance(prompt_input: str, text: str) -> float:
    """Brevity's score before its floors: half the content kept, half shortness."""
    short = min(1.0, max(0.0, (BREVITY_LONGEST - extra_words(text)) / (BREVITY_LONGEST - BREVITY_EXTRA)))
    return 0.5 * content_kept(prompt_input, text) + 0.5 * short


def extra_words(text: str) -> int:
    """Words beyond the content words: what brevity counts against a text."""
    return len(words(text)) - len(content_words(text))


def fidelity(prompt_input: str, candidate: str) -> float:
    """0..1: 0.6 times the share of content kept, 0.2 for inventing no content word, 0.2 well-formed; an insult
    costs 0.5, repetitive or off-topic text scores at most 0.1."""
    text = candidate.strip()
    score = 0.6 * content_kept(prompt_input, text) + 0.2 * (not invented(prompt_input, text)) + 0.2 * well_formed(text)
    if has_insult(text):
        score -= 0.5
    if off_topic(prompt_input, text) or repetitive(text):
        score = min(score, 0.1)
    return round(max(0.0, min(1.0, score)), 4)


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
        "well-formed, on topic, no insult, 3/4 of the content words kept, 2+ polite markers")),
    "brevity": Judge("brevity", brevity, accept=0.8, description=(
        "well-formed, no insult, every content word kept, at most ~5 other words")),
    "fidelity": Judge("fidelity", fidelity, accept=0.95, description=(
        "well-formed, no insult, every content word kept, no content word made up")),
}
