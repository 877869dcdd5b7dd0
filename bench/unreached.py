"""Measured messages a loop never got a good sample for, and whether the message itself, as written, is good.

    PYTHONPATH=. .venv/bin/python bench/unreached.py bench/out/loop-v4c-brev.json [more loop files]

Reads bench/loop.py's results (realistic set), adds up each measured message's good samples over the seeds at the
first and the last round, and lists the messages with none at the last. Beside each: the judge's score for the
message written out as a sentence (emoji dropped, a capital, a full stop), which a model that copies perfectly
would give. Where that is not good, the judge asks for a rewrite shorter than what the person wrote: a sample the
starter has to offer before a click can pick it. The summary splits the good rate by that test.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from bench.common import markdown_table
from bench.judges import JUDGES
from bench.loop import prompt_sets

# Anything but letters, digits, spaces and the punctuation people write: emoji and symbols.
_SYMBOL = re.compile(r"\s*[^\w\s,.'?!:;/&()\-$%@#+]+")


def as_written(message: str) -> str:
    """The message as a sentence: emoji and symbols dropped, a capital first, a full stop where none ends it."""
    text = _SYMBOL.sub("", message).strip()
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "?", "!")) else text + "."


def good_by_message(results: dict, *, measured: list[str], round_index: int) -> dict[str, int]:
    """Good samples per measured message at one round, added over the seeds of one loop file."""
    totals = [0] * len(measured)
    for run in results.values():
        for i, good in enumerate(run["rounds"][round_index]["good_by_input"]):
            totals[i] += good
    return dict(zip(measured, totals, strict=True))


def report(results: dict, *, measured: list[str]) -> tuple[list[list], dict[str, float]]:
    """(rows for the messages with no good sample at the last round, the good rate split by whether the message
    as written is good)."""
    runs = list(results.values())
    judge = JUDGES[runs[0]["judge"]]
    samples = sum(run["rounds"][-1]["samples"] for run in runs) // len(measured)  # per message, over the seeds
    first = good_by_message(results, measured=measured, round_index=0)
    last = good_by_message(results, measured=measured, round_index=-1)
    passes = {m: judge.good(m, as_written(m)) for m in measured}
    rows = [[m, f"{first[m]}/{samples}", f"{judge.score(m, as_written(m)):.3f}", "yes" if passes[m] else "no"]
            for m in measured if last[m] == 0]
    split_rate = {}
    for kind, members in (("as written is good", [m for m in measured if passes[m]]),
                          ("as written is not good", [m for m in measured if not passes[m]])):
        if members:
            split_rate[f"{kind} (messages: {len(members)})"] = sum(last[m] for m in members) / (samples * len(members))
    return rows, split_rate


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("loops", nargs="+", help="bench/loop.py --out files, each of one judge on the realistic set")
    args = p.parse_args(argv)
    for path in args.loops:
        results = json.loads(Path(path).read_text(encoding="utf-8"))["results"]
        first_run = next(iter(results.values()))
        if first_run["prompts"] != "realistic":
            raise SystemExit(f"{path}: measured on {first_run['prompts']!r} prompts; this reads the realistic set")
        # The loop's own measured set, so the messages line up with its good_by_input.
        _, measured = prompt_sets("realistic", pool=0, heldout=first_run["heldout_prompts"], seed=first_run["seed"])
        rows, split_rate = report(results, measured=measured)
        print(f"\n{path}: {first_run['judge']}, {len(results)} seeds, {len(rows)} messages with no good sample")
        print(markdown_table(["message", "good at the first round", "score as written", "good as written"], rows))
        for kind, rate in split_rate.items():
            print(f"- good rate at the last round where the message {kind}: {100 * rate:.1f}%")


if __name__ == "__main__":
    main()
