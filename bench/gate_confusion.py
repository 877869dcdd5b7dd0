"""The gate's mistakes over loop runs: versions promoted that measured worse, versions kept out that measured better.

    PYTHONPATH=. .venv/bin/python bench/gate_confusion.py bench/out/loop*.json [--tags TAG,...]

Each trained version of each run in bench/loop.py's JSON is one row: its parent's good rate and its own on the
measured set (a rejected version is measured too, unless the run was made with --no-measure-rejected), the
difference paired by measured input with its standard error, and the gate's verdict. "Measured worse" and
"measured better" mean the difference is beyond 1.96 standard errors (paired by input, 3 samples each); the rest
are "within noise". Then the same versions under other rules, replayed on the numbers the gate recorded (runs made
before bench/loop.py kept them are left out of the replay): "before", the fixed distinct line of 2.5 without the
relative rule, and "after", the relative rule without the line: at 1 standard error of the paired drop (the
issue's wording) and at 8 (the default); and the test of "worse" on held-out pairs as it was (a sign test over
pairs) and as it is (a randomization test by input), on versions whose gate recorded the per-input differences,
with the diversity rule at its default. A replay
changes only the verdict on that version: after a different verdict the loop would have gone on from another
parent, which no replay can show.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import Counter
from pathlib import Path

from bench.common import markdown_table
from worker.evaluation import gate_reasons

RULES = {
    "before (distinct >= 2.5)": {"min_distinct": 2.5, "max_distinct_drop_se": None},
    "relative, 1 SE (the issue's wording)": {"min_distinct": 0.0, "max_distinct_drop_se": 1.0},
    "after: relative, 8 SE (the default)": {"min_distinct": 0.0, "max_distinct_drop_se": 8.0},
    "worse: sign test over pairs (before)": {"min_distinct": 0.0, "max_distinct_drop_se": 8.0, "worse_by": "pairs"},
    "worse: randomization test by input (after)": {"min_distinct": 0.0, "max_distinct_drop_se": 8.0,
                                                   "worse_by": "inputs"},
}
BASE_GATE = {"max_fluency_drop": 1.0, "max_length_ratio": 2.5}


def versions(result: dict) -> list[dict]:
    """Each trained version of one run: measured good rate against its parent's, paired by input."""
    out, served = [], result["rounds"][0]
    for row in result["rounds"][1:]:
        promoted = row["gate"] == "promoted"
        measured = row if promoted else row.get("candidate")
        if measured is not None and "good_by_input" in measured and "good_by_input" in served:
            diffs = [a - b for a, b in zip(measured["good_by_input"], served["good_by_input"], strict=True)]
            per_sample = len(diffs) and measured["samples"] / len(diffs)
            delta = statistics.fmean(diffs) / per_sample
            se = statistics.stdev(diffs) / per_sample / len(diffs) ** 0.5
            kind = "worse" if delta < -1.96 * se else "better" if delta > 1.96 * se else "within noise"
            out.append({"run": f"{result['arch']}/{result['judge']}/{result.get('tag') or 'headline'}/"
                               f"s{result['seed']}", "round": row["round"], "gate": row["gate"],
                        "parent": served["good_rate"], "version": measured["good_rate"], "delta": delta, "se": se,
                        "measured": kind, "metrics": row.get("gate_metrics"), "env": result.get("env") or {}})
        if promoted:
            served = row
    return out


def replay(version: dict, rule: dict) -> str | None:
    """'promoted' or 'rejected' under a rule, from the recorded gate metrics (None when they were not recorded)."""
    m = version["metrics"]
    if not m or "distinct_drop" not in m:
        return None
    if rule.get("worse_by"):
        if m.get("heldout_p_worse") is None and m.get("accuracy_candidate") is not None:
            return None  # gated before the test by input: both tests are replayed on the same versions only
        if rule["worse_by"] == "pairs":
            m = {k: v for k, v in m.items() if k != "heldout_p_worse"}
    env = version["env"]
    gate = BASE_GATE | {"max_fluency_drop": float(env.get("GATE_MAX_FLUENCY_DROP", 1.0)),
                        "max_length_ratio": float(env.get("GATE_MAX_LENGTH_RATIO", 2.5))} | rule
    return "rejected" if gate_reasons(m, gate) else "promoted"


def confusion(rows: list[dict], verdict) -> dict:
    """Counts of (verdict, measured) over rows."""
    return dict(Counter((verdict(r), r["measured"]) for r in rows if verdict(r) is not None))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("files", nargs="+", type=Path)
    p.add_argument("--tags", default="", help="only runs with these tags (comma-separated; 'headline' for '')")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    wanted = set(args.tags.split(",")) if args.tags else None
    rows = []
    for path in args.files:
        for result in json.loads(path.read_text())["results"].values():
            if wanted is None or (result.get("tag") or "headline") in wanted:
                rows += versions(result)
    print(markdown_table(["run", "round", "gate", "parent good", "version good", "difference (SE)", "measured"],
                         [[r["run"], r["round"], r["gate"], f"{r['parent']:.1%}", f"{r['version']:.1%}",
                           f"{r['delta']:+.1%} ({r['se']:.1%})", r["measured"]] for r in rows]))
    tables = {"as run": confusion(rows, lambda r: "promoted" if r["gate"] == "promoted" else "rejected")}
    tables |= {name: confusion(rows, lambda r, rule=rule: replay(r, rule)) for name, rule in RULES.items()}
    header = ["rule", "versions", "promoted, measured worse", "promoted, within noise", "promoted, measured better",
              "kept out, measured worse", "kept out, within noise", "kept out, measured better"]
    lines = []
    for name, counts in tables.items():
        cells = [counts.get((v, k), 0) for v in ("promoted", "rejected") for k in ("worse", "within noise", "better")]
        lines.append([name, sum(cells), *cells])
    print()
    print(markdown_table(header, lines))
    if args.out:
        args.out.write_text(json.dumps({"versions": rows, "tables": {k: {f"{a}/{b}": n for (a, b), n in v.items()}
                                                                     for k, v in tables.items()}}, indent=2))


if __name__ == "__main__":
    main()
