"""How many arena votes separate two versions, and what CHALLENGER_MIN_VOTES buys: a scripted voter, the app's ratings.

    PYTHONPATH=. .venv/bin/python bench/arena_votes.py [--runs 20] [--max-votes 3000] [--probs 0.5,0.55,0.6,0.7,0.8]
        [--rounds 200] [--plot docs/arena_votes.png]

A voter prefers the better version with probability p (no ties; p = 0.5: the versions are equal). Votes arrive one
by one and the leaderboard (app/arena/ratings.py: Bradley-Terry, ARENA_BOOTSTRAP_ROUNDS bootstrap rounds, the app's
prior) is recomputed on a grid of vote counts (10, then 5% more each time), as the app would show it then. For each p
and each of --runs seeds:
- separated: the first count at which the better version's 95% interval lies wholly above the other's (the
  leaderboard's separation, and the challenger's verdict "ahead" when the challenger is the better one);
- for each candidate CHALLENGER_MIN_VOTES: what the automatic rule would do (the verdict at the first grid count at
  or past it that is not "undecided"): right (promote the better), wrong (the other), or none within --max-votes.
The grid looks less often than the app (after every vote), so the wrong rates here are a lower bound for the rule.
Writes bench/out/arena_votes.json and the plot; prints the tables.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np

from app.arena.challenger import verdict
from app.arena.ratings import leaderboard
from bench.common import OUT, markdown_table, write_json

MIN_VOTES = (0, 25, 50, 100, 200)


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--max-votes", type=int, default=3000)
    p.add_argument("--probs", default="0.5,0.55,0.6,0.7,0.8")
    p.add_argument("--rounds", type=int, default=200, help="bootstrap rounds (the app's ARENA_BOOTSTRAP_ROUNDS)")
    p.add_argument("--plot", type=Path, default=Path("docs/arena_votes.png"))
    p.add_argument("--out", type=Path, default=OUT / "arena_votes.json")
    return p.parse_args()


def grid(max_votes: int) -> list[int]:
    """10, then 5% more each time (at least 1), up to max_votes."""
    counts, n = [], 10
    while n <= max_votes:
        counts.append(n)
        n = max(n + 1, int(n * 1.05))
    return counts


def simulate(p: float, seed: int, *, counts: list[int], rounds: int) -> list[tuple[int, str]]:
    """(votes, verdict of the better version "B" against "A") at each grid count, until the first decision at or past
    the largest MIN_VOTES (later counts change nothing this benchmark reports)."""
    rng = np.random.default_rng(seed)
    better_wins = rng.random(counts[-1]) < p
    votes = [("B", "A", "a" if w else "b") if i % 2 else ("A", "B", "b" if w else "a")
             for i, w in enumerate(better_wins)]
    trail = []
    for n in counts:
        rows = {r["version_id"]: r for r in leaderboard(votes[:n], rounds=rounds, seed=seed)}
        trail.append((n, verdict(rows["A"], rows["B"])))
        if n >= max(MIN_VOTES) and trail[-1][1] != "undecided":
            break
    return trail


def rule_outcome(trail: list[tuple[int, str]], min_votes: int) -> tuple[str, int | None]:
    """What the automatic rule decides, and at how many votes: ("right" | "wrong" | "none", votes)."""
    for n, said in trail:
        if n >= min_votes and said != "undecided":
            return ("right" if said == "ahead" else "wrong"), n
    return "none", None


def spread(values: list[int]) -> str:
    """median (min-max), or "never" when empty."""
    return f"{statistics.median(values):.0f} ({min(values)}-{max(values)})" if values else "never"


def main() -> None:
    """Run every p and seed, print the tables, write the JSON and the plot."""
    args = parse_args()
    probs = [float(x) for x in args.probs.split(",")]
    counts = grid(args.max_votes)
    results = {}
    for p in probs:
        trails = [simulate(p, seed, counts=counts, rounds=args.rounds) for seed in range(args.runs)]
        separated = [next((n for n, said in t if said == "ahead"), None) for t in trails]
        rules = {m: [rule_outcome(t, m) for t in trails] for m in MIN_VOTES}
        results[p] = {"separated": separated,
                      "rule": {m: [{"outcome": o, "votes": n} for o, n in r] for m, r in rules.items()}}
        print(f"p={p}: separated at {spread([n for n in separated if n])}", flush=True)

    table = []
    for p in probs:
        sep = [n for n in results[p]["separated"] if n]
        table.append([p, spread(sep), f"{len(sep)}/{args.runs}"])
    print(markdown_table(["p (voter prefers the better)", "votes until its interval is above, median (range)",
                          f"runs separated within {args.max_votes}"], table))
    rows = []
    for m in MIN_VOTES:
        row = [m]
        for p in probs:
            outcomes = results[p]["rule"][m]
            right = sum(o["outcome"] == "right" for o in outcomes)
            wrong = sum(o["outcome"] == "wrong" for o in outcomes)
            votes = [o["votes"] for o in outcomes if o["outcome"] != "none"]
            row.append(f"{right}/{wrong}/{len(outcomes) - right - wrong} at {spread(votes)}" if p != 0.5
                       else f"{right + wrong} of {len(outcomes)} decided")
        rows.append(row)
    print()
    print(markdown_table(["CHALLENGER_MIN_VOTES", *[f"p={p}" for p in probs]], rows))
    write_json(args.out, {"args": {k: str(v) for k, v in vars(args).items()}, "grid": counts,
                          "results": {str(p): r for p, r in results.items()}})
    plot(results, probs, args)


def plot(results: dict, probs: list[float], args) -> None:
    """Votes until separated against p: each run as a dot, the median as a bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=120)
    shown = [p for p in probs if p != 0.5]
    for i, p in enumerate(shown):
        sep = [n for n in results[p]["separated"] if n]
        ax.scatter([i] * len(sep), sep, s=12, alpha=0.5, color="#2456c9")
        if sep:
            ax.hlines(statistics.median(sep), i - 0.3, i + 0.3, color="#b8741f", linewidth=2)
    ax.set_xticks(range(len(shown)), [f"p = {p}" for p in shown])
    ax.set_yscale("log")
    ax.set_ylabel("votes until the better version's\n95% interval is above the other's")
    ax.set_title(f"Arena votes needed ({args.runs} simulated runs each; bar: median)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot)


if __name__ == "__main__":
    main()
