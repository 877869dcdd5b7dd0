"""The gate's test of "worse" on held-out clicks: how often it cries wolf, and how often it catches a real drop,
counting pairs (the sign test it used) or inputs (the randomization test it uses now).

    PYTHONPATH=. .venv/bin/python bench/gate_power.py [--trials 2000] [--out bench/out/gate_power.json]

A simulation, not a model: each held-out click makes `pairs` pairs that share its chosen text, so the candidate and
its parent disagree on a click's pairs together (with chance `disagree` they rank the click differently, on all of
its pairs; otherwise they agree on all). Under "equal" the direction of a disagreement is a coin flip; under a drop
the candidate loses it with chance 0.5 + drop. The share of trials each test calls "worse" at the gate's level
(p < 0.05) is its false-alarm rate (equal) or its power (a drop). Clicks held out per gate run here: 10 to 90, the
range the loop's gates saw.

`two_steps` (the rows under "Evidence carried across rounds"): a lineage grandparent -> parent -> candidate, each a
step of `step` worse at ranking a held-out click (the chance it ranks a click right: 0.7, 0.7 - step,
0.7 - 2 step, drawn independently per model and click, both pairs of a click alike). The candidate's gate asks the
test against its parent at 5%, and with GATE_ANCESTORS against the grandparent too at 5% / 1 earlier version
(one tested here). Share of trials that hold the candidate back either way.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from bench.common import OUT, markdown_table
from worker.evaluation import WORSE_P, flip_test, sign_test


def simulate(*, clicks: int, pairs: int, disagree: float, drop: float, trials: int, seed: int) -> dict:
    """Share of trials in which each test says "worse"."""
    rng = random.Random(seed)
    by_pairs = by_inputs = 0
    for _ in range(trials):
        differences = []
        for _ in range(clicks):
            if rng.random() < disagree:
                differences.append(-pairs if rng.random() < 0.5 + drop else pairs)
            else:
                differences.append(0)
        worse = sum(-d for d in differences if d < 0)
        better = sum(d for d in differences if d > 0)
        by_pairs += sign_test(worse, better) < WORSE_P
        by_inputs += flip_test([float(d) for d in differences]) < WORSE_P
    return {"clicks": clicks, "pairs": pairs, "disagree": disagree, "drop": drop,
            "worse_by_pairs": by_pairs / trials, "worse_by_inputs": by_inputs / trials}


def two_steps(*, clicks: int, step: float, trials: int, seed: int, right: float = 0.7) -> dict:
    """Share of trials whose candidate is held back by the test against its parent alone, and with the grandparent
    (the same held-out clicks, the grandparent at the level it shares with no other earlier version)."""
    rng = random.Random(seed)
    alone = carried = 0
    for _ in range(trials):
        scores = [[2 * (rng.random() < right - k * step) for _ in range(clicks)] for k in range(3)]
        grandparent, parent, candidate = scores
        against_parent = flip_test([float(c - p) for c, p in zip(candidate, parent, strict=True)]) < WORSE_P
        against_grandparent = flip_test([float(c - g) for c, g in zip(candidate, grandparent, strict=True)]) < WORSE_P
        alone += against_parent
        carried += against_parent or against_grandparent
    return {"clicks": clicks, "step": step, "held_back_parent_only": alone / trials,
            "held_back_with_ancestors": carried / trials}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--trials", type=int, default=2000)
    p.add_argument("--disagree", type=float, default=0.3, help="chance the two rank a click differently")
    p.add_argument("--out", type=Path, default=OUT / "gate_power.json")
    args = p.parse_args()
    rows = [simulate(clicks=clicks, pairs=2, disagree=args.disagree, drop=drop, trials=args.trials, seed=clicks)
            for drop in (0.0, 0.25, 0.4) for clicks in (10, 30, 90)]
    print(markdown_table(["held-out clicks", "pairs a click", "candidate loses a disagreement", "worse: over pairs",
                          "worse: by input"],
                         [[r["clicks"], r["pairs"], f"{0.5 + r['drop']:.0%}", f"{r['worse_by_pairs']:.1%}",
                           f"{r['worse_by_inputs']:.1%}"] for r in rows]))
    steps = [two_steps(clicks=clicks, step=step, trials=args.trials, seed=100 + clicks)
             for step in (0.0, 0.05, 0.1) for clicks in (20, 40, 90)]
    print()
    print(markdown_table(["held-out clicks", "right: grandparent / parent / candidate", "held back: parent only",
                          "held back: with the grandparent"],
                         [[r["clicks"], f"{0.7:.2f} / {0.7 - r['step']:.2f} / {0.7 - 2 * r['step']:.2f}",
                           f"{r['held_back_parent_only']:.1%}", f"{r['held_back_with_ancestors']:.1%}"]
                          for r in steps]))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"trials": args.trials, "rows": rows, "two_steps": steps}, indent=2))


if __name__ == "__main__":
    main()
