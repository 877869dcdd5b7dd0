"""Why samples are not good: the share of samples meeting each requirement of the judges, per model.

    PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python bench/failures.py [--models PATH,...]
        [--prompts out|in|realistic] [--heldout 80] [--seed 0]

Samples each checkpoint (default: the default GPT-2 starter) 3 times on bench/loop.py's held-out prompts with the
server's settings, as the loop measures it, and reports how many samples meet each requirement the judges share
(well-formed, not repetitive, on topic, no insult, content kept) and each judge's own (two polite markers;
shortness; nothing made up), beside each judge's good rate. The requirement met least often bounds
that judge's good rate from above: no amount of clicks gets past it without the model learning it. Below them, the
share of samples failing each part of well-formed (as the loop counts it, cut-off text included).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.common import cached_starter, markdown_table
from bench.judges import (
    JUDGES,
    MALFORMED,
    brevity_balance,
    content_kept,
    extra_words,
    has_insult,
    has_threat,
    invented,
    off_topic,
    polite_markers,
    repetitive,
    well_formed,
)
from bench.loop import generation_settings, prompt_sets, sample_model

CHECKS = {
    "well-formed": lambda i, t: well_formed(t),  # as the judges read it (the loop also counts cut-off text)
    "not repetitive": lambda i, t: not repetitive(t),
    "on topic": lambda i, t: not off_topic(i, t),
    "no insult": lambda i, t: not has_insult(t),
    "no threat": lambda i, t: not has_threat(t),
    "3/4 of content kept": lambda i, t: content_kept(i, t) >= 0.75,
    "all content kept": lambda i, t: content_kept(i, t) == 1.0,
    "2+ polite markers": lambda i, t: polite_markers(t) >= 2,
    "short (<= 5 other words)": lambda i, t: extra_words(t) <= 5,
    # brevity: 0.5 x content kept + 0.5 x shortness >= 0.8 (rounded as the judge): all content and <= 5 other words, ...
    "short enough for the content kept": lambda i, t: round(brevity_balance(i, t), 4) >= 0.8,
    "nothing made up": lambda i, t: not invented(i, t),
}


# What each judge's "good" takes (bench/judges.py: at its acceptance line every one of these must hold).
NEEDS = {
    "politeness": ["well-formed", "not repetitive", "on topic", "no insult", "no threat", "3/4 of content kept",
                   "2+ polite markers"],
    "brevity": ["well-formed", "not repetitive", "on topic", "no insult", "all content kept",
                "short enough for the content kept"],
    "fidelity": ["well-formed", "not repetitive", "on topic", "no insult", "all content kept", "nothing made up"],
}


def shares(rows: list[dict]) -> dict[str, float]:
    """Share of samples meeting each check; each judge's good rate; and, per judge, each requirement's share among
    the samples meeting all its other requirements (the lowest is what stops that judge's good rate)."""
    samples = [(r["input"], t) for r in rows for t in r["samples"]]
    met = [{name: check(*s) for name, check in CHECKS.items()} for s in samples]
    out = {name: sum(m[name] for m in met) / len(met) for name in CHECKS}
    for judge in JUDGES.values():
        out[f"good: {judge.name}"] = sum(judge.good(i, t) for i, t in samples) / len(samples)
    for judge, needs in NEEDS.items():
        for need in needs:
            rest = [m for m in met if all(m[n] for n in needs if n != need)]
            out[f"{judge}: {need}, given the rest"] = sum(m[need] for m in rest) / max(len(rest), 1)
    cut = [(t, c) for r in rows for t, c in zip(r["samples"], r["truncated"], strict=True)]
    out["well-formed as the loop counts it"] = sum(well_formed(t, truncated=c) for t, c in cut) / len(cut)
    for name, fails in MALFORMED.items():
        out[f"not well-formed: {name}"] = sum(bool(fails(t, c)) for t, c in cut) / len(cut)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="", help="checkpoint folders, comma-separated (default: the GPT-2 starter)")
    p.add_argument("--prompts", choices=["in", "out", "realistic"], default="out")
    p.add_argument("--heldout", type=int, default=80)
    p.add_argument("--pool", type=int, default=200)
    p.add_argument("--seed", type=int, default=0, help="bench/loop.py's seed: picks its out-of-corpus prompts")
    args = p.parse_args(argv)
    models = [Path(m) for m in args.models.split(",") if m] or [cached_starter("gpt2", "default")]
    _, heldout = prompt_sets(args.prompts, pool=args.pool, heldout=args.heldout, seed=args.seed)
    gen = generation_settings({})
    columns = {}
    for path in models:
        columns[str(path)] = shares(sample_model(path, heldout, gen, seed=10_000))
    names = list(next(iter(columns.values())))
    print(markdown_table(["requirement", *columns], [[n, *(f"{100 * c[n]:.1f}%" for c in columns.values())]
                                                     for n in names]))


if __name__ == "__main__":
    main()
