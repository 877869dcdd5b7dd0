"""The capacity curve: bench/load.py's runs at several annotator counts, as a table and a plot.

    PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python bench/load.py --annotators 5,10,20,40,80 --backends sqlite \
        --reps 1 --out bench/out/capacity.json
    PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python bench/capacity.py bench/out/capacity.json [--plot docs/capacity.png]

Per run: annotators against click -> next p50 and p95, answer p95 (log scale), and the share of comparisons handed
out that came from the prefetch buffer; busy 503s and errors in the table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.common import markdown_table


def rows(report: dict) -> list[dict]:
    """One point per run, by backend then annotator count."""
    points = []
    for r in sorted(report["runs"], key=lambda r: (r["backend"], r["annotators"])):
        points.append({"backend": r["backend"], "annotators": r["annotators"], "clicks": r["clicks"],
                       "p50": r["click_to_next_ms"]["p50"], "p95": r["click_to_next_ms"]["p95"],
                       "answer_p95": r["answer_ms"]["p95"], "buffer": r["from_buffer"] / max(1, r["handed_out"]),
                       "busy": r.get("busy_503s", 0), "errors": r["errors"]})
    return points


def plot(points: list[dict], path: Path, title: str) -> None:
    """Latencies (log) against annotators; the buffer's share on a second axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.8), dpi=120)
    for backend in dict.fromkeys(p["backend"] for p in points):
        mine = [p for p in points if p["backend"] == backend]
        x = [p["annotators"] for p in mine]
        for key, label, style in (("p50", "click -> next p50", "-o"), ("p95", "click -> next p95", "-s"),
                                  ("answer_p95", "answer p95", "-^")):
            ax.plot(x, [p[key] for p in mine], style, label=f"{label} ({backend})", markersize=4)
    ax.axhline(50, color="#999", linestyle=":", linewidth=1)
    ax.set_yscale("log")
    ax.set_xlabel("annotators (1 s think time)")
    ax.set_ylabel("ms")
    share = ax.twinx()
    for backend in dict.fromkeys(p["backend"] for p in points):
        mine = [p for p in points if p["backend"] == backend]
        share.plot([p["annotators"] for p in mine], [100 * p["buffer"] for p in mine], "--", color="#b8741f",
                   label=f"from the buffer, % ({backend})")
    share.set_ylim(0, 100)
    share.set_ylabel("comparisons from the buffer, %")
    lines = ax.get_legend_handles_labels()[0] + share.get_legend_handles_labels()[0]
    labels = ax.get_legend_handles_labels()[1] + share.get_legend_handles_labels()[1]
    ax.legend(lines, labels, fontsize=7, loc="upper left")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("report", type=Path, help="bench/load.py's JSON")
    p.add_argument("--plot", type=Path, default=Path("docs/capacity.png"))
    args = p.parse_args()
    report = json.loads(args.report.read_text())
    points = rows(report)
    print(markdown_table(["backend", "annotators", "clicks", "click -> next p50", "p95", "answer p95",
                          "from the buffer", "busy 503s", "errors"],
                         [[q["backend"], q["annotators"], q["clicks"], q["p50"], q["p95"], q["answer_p95"],
                           f"{100 * q['buffer']:.0f}%", q["busy"], q["errors"]] for q in points]))
    run_args = report["args"]
    plot(points, args.plot, f"Capacity: the {run_args.get('model')} at {run_args.get('new_tokens')} new tokens, "
                            "one run per point")


if __name__ == "__main__":
    main()
