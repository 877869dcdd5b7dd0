"""Messages as people write them (bench/data/messages.txt), split into a click pool and a measured set.

    PYTHONPATH=. .venv/bin/python bench/realistic.py [--measured 100]

The messages were written by hand: blunt requests, complaints and reminders with names, times, numbers, places,
questions, lowercase, typos, a few accents and emoji. None fits a shape of the starter's corpus generator
(`corpus_shape` checks). The split puts in the measured set the messages whose content words (bench/judges.py's
`content_words`, compared by `stem`) the others share least, so that clicks on the pool teach as little of the
measured set's words as possible; the report says how much is still shared. Writes bench/out/realistic-split.json.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from functools import cache
from pathlib import Path

from bench.common import OUT, write_json
from bench.judges import content_words, stem

MESSAGES_FILE = Path(__file__).resolve().parent / "data" / "messages.txt"
MEASURED = 100


@cache
def load_messages(path: Path = MESSAGES_FILE) -> tuple[str, ...]:
    """The messages of the file, in order (comments and blank lines left out)."""
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return tuple(line for line in lines if line and not line.startswith("#"))


def stems(message: str) -> set[str]:
    """The stems of a message's content words."""
    return {stem(w) for w in content_words(message)}


def corpus_shape(message: str) -> str | None:
    """The corpus generator's shape (worker/corpus.py SHAPES) this message fits, or None; with a second clause and
    the endings make_message adds (a time, an insult, a threat, punctuation, an emoji)."""
    from worker.corpus import DAYS, INSULTS, MONTHS, NAMES, SHAPES, THREAT_TAILS, WHEN

    def alternatives(items) -> str:
        return "(?:" + "|".join(re.escape(i.lower()) for i in items) + ")"

    text = re.sub(r"[.!?]+$", "", re.sub(r" [^\w\s]$", "", message.strip()).lower())
    who = "[a-záéíñöü]+"
    num = r"(?:\$?[\d,]+%?|#\d+|q[1-4]|\d+[a-z]|[a-z]{1,3}-\d+|v\d\.\d+)"
    time = (rf"(?:\d{{1,2}}(?:pm|am|:\d\d| am| pm)|{alternatives(DAYS)}|{alternatives(MONTHS)} \d{{1,2}}"
            r"|the \d{1,2}th)")
    word = r"[a-z]+"
    slots = {"v": word, "n": word, "n2": word, "a": word, "a2": word, "name": alternatives(NAMES),
             "when": alternatives(WHEN), "who": who, "num": num, "time": time,
             "place": rf"(?:room {num}|floor \d+|gate \d+|{who} street|the {word} office|{who})"}
    cores = [re.sub(r"\\\{(\w+)\\\}", lambda m: slots[m.group(1)], re.escape(shape.lower())) for shape in SHAPES]
    second = "(?:(?:, |\\. | and |, then )(?:" + "|".join(cores) + "))?"
    tail = (f"(?: {slots['when']}|, {alternatives(INSULTS)}|{alternatives(THREAT_TAILS)})?")
    for shape, core in zip(SHAPES, cores, strict=True):
        if re.fullmatch(core + second + r"\??" + tail, text):
            return shape
    return None


def split(messages: tuple[str, ...] | None = None, *, measured: int = MEASURED) -> tuple[list[str], list[str]]:
    """(pool, measured): a measured set of `measured` messages sharing as few content words with the pool as a
    greedy start and swaps find. Start: the messages whose words the others share least (ties in file order);
    then swap a measured and a pool message while that lowers the count of measured words found in the pool."""
    messages = load_messages() if messages is None else messages
    df = Counter(s for m in messages for s in stems(m))
    order = sorted(messages, key=lambda m: (sum(df[s] - 1 for s in stems(m)), messages.index(m)))
    chosen, rest = order[:measured], order[measured:]
    in_chosen, in_rest = Counter(s for m in chosen for s in stems(m)), Counter(s for m in rest for s in stems(m))

    def shared_after(m: str, p: str) -> int:
        """Measured words found in the pool if m and p changed sides (counted over the words they touch)."""
        touched = stems(m) | stems(p)
        before = sum(1 for s in touched if in_chosen[s] and in_rest[s])
        c, r = in_chosen.copy(), in_rest.copy()
        c.subtract(stems(m))
        c.update(stems(p))
        r.subtract(stems(p))
        r.update(stems(m))
        return sum(1 for s in touched if c[s] > 0 and r[s] > 0) - before

    improved = True
    while improved:
        improved = False
        for i, m in enumerate(chosen):
            best = min(rest, key=lambda p: (shared_after(m, p), rest.index(p)))
            if shared_after(m, best) < 0:
                j = rest.index(best)
                chosen[i], rest[j] = best, m
                in_chosen.subtract(stems(m))
                in_chosen.update(stems(best))
                in_rest.subtract(stems(best))
                in_rest.update(stems(m))
                improved = True
    picked = set(chosen)
    return [m for m in messages if m not in picked], [m for m in messages if m in picked]


def overlap(pool: list[str], measured: list[str]) -> dict:
    """What the measured set shares with the pool: messages, content words, and measured messages sharing none."""
    pool_stems = set().union(*(stems(m) for m in pool))
    measured_stems = set().union(*(stems(m) for m in measured))
    return {
        "pool": len(pool), "measured": len(measured), "messages_shared": len(set(pool) & set(measured)),
        "measured_content_words": len(measured_stems),
        "measured_content_words_in_pool": len(measured_stems & pool_stems),
        "share_of_measured_words_in_pool": round(len(measured_stems & pool_stems) / max(1, len(measured_stems)), 3),
        "measured_messages_sharing_no_word": sum(1 for m in measured if not stems(m) & pool_stems),
    }


def main() -> None:
    """Split, and report the overlap."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--measured", type=int, default=MEASURED)
    p.add_argument("--out", type=Path, default=OUT / "realistic-split.json")
    args = p.parse_args()
    messages = load_messages()
    pool, measured = split(messages, measured=args.measured)
    report = overlap(pool, measured) | {"messages": len(messages),
                                         "fitting_a_corpus_shape": [m for m in messages if corpus_shape(m)]}
    for key, value in report.items():
        print(f"{key}: {value}")
    write_json(args.out, report | {"measured_set": measured})


if __name__ == "__main__":
    main()
