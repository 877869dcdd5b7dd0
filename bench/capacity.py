"""The capacity curve: bench/load.py's runs at several annotator counts, as a table and a plot.

    PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python bench/load.py --annotators 5,10,20,40,80 \
        --backends sqlite@web,sqlite@prefetcher,postgres@web,postgres@prefetcher --reps 1 \
        --out bench/out/capacity.json
    PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python bench/capacity.py bench/out/capacity.json [more.json ...] \
        [--plot docs/capacity.png]

Several reports (one per model, say) go in one figure: a row of panels per model and token count. Left, per run:
annotators against click -> next p95 (solid) and answer p95 (dashed), log scale, one colour per backend and setting.
Right: clicks stored per second, the throughput. The table adds p50, the share of comparisons handed out that came
from the prefetch buffer, busy 503s and errors; below it, per model, each setting's best throughput against the
web's (`@web`: requests that find the buffer empty sample in their own web process).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bench.common import markdown_table


def rows(report: dict) -> list[dict]:
    """One point per run, by backend then annotator count; `model` names the model and its new tokens."""
    args = report.get("args", {})
    model = f"{args.get('model', 'starter')} at {args.get('new_tokens', '?')} tokens"
    points = []
    for r in sorted(report["runs"], key=lambda r: (r["backend"], r["annotators"])):
        points.append({"model": model, "backend": r["backend"], "annotators": r["annotators"], "clicks": r["clicks"],
                       "clicks_per_s": r.get("clicks_per_s"),
                       "p50": r["click_to_next_ms"]["p50"], "p95": r["click_to_next_ms"]["p95"],
                       "answer_p95": r["answer_ms"]["p95"], "buffer": r["from_buffer"] / max(1, r["handed_out"]),
                       "busy": r.get("busy_503s", 0), "errors": r["errors"]})
    return points


def throughput_factors(points: list[dict]) -> list[dict]:
    """Per model and backend: the most clicks stored per second at any load, and its ratio to the same database's
    `@web` setting (the inline sampling the handoff replaces); None where there is no `@web` run."""
    best: dict[tuple[str, str], float] = {}
    for p in points:
        key = (p["model"], p["backend"])
        best[key] = max(best.get(key, 0.0), p["clicks_per_s"] or 0.0)
    out = []
    for (model, backend), value in best.items():
        web = best.get((model, backend.split("@")[0] + "@web"))
        out.append({"model": model, "backend": backend, "best_clicks_per_s": value,
                    "vs_web": round(value / web, 2) if web else None})
    return out


def plot(points: list[dict], path: Path, title: str) -> None:
    """Per model a row: latencies (log) and throughput against annotators, a colour per backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(p["model"] for p in points))
    backends = list(dict.fromkeys(p["backend"] for p in sorted(points, key=lambda p: p["backend"])))
    colours = dict(zip(backends, plt.get_cmap("tab10").colors, strict=False))
    fig, axes = plt.subplots(len(models), 2, figsize=(9.6, 3.2 * len(models)), dpi=110, squeeze=False)
    for (lat, rate), model in zip(axes, models, strict=True):
        for backend in backends:
            mine = [p for p in points if p["model"] == model and p["backend"] == backend]
            if not mine:
                continue
            x = [p["annotators"] for p in mine]
            colour = colours[backend]
            lat.plot(x, [p["p95"] for p in mine], "-o", color=colour, markersize=4,
                     label=f"click -> next p95, {backend}")
            lat.plot(x, [p["answer_p95"] for p in mine], "--^", color=colour, markersize=3, alpha=0.8,
                     label=f"answer p95, {backend}")
            rate.plot(x, [p["clicks_per_s"] for p in mine], "-o", color=colour, markersize=4, label=backend)
        lat.axhline(50, color="#999", linestyle=":", linewidth=1)
        lat.set_yscale("log")
        lat.set_ylabel("ms")
        lat.set_title(model, fontsize=9)
        rate.set_ylabel("clicks stored per second")
        rate.set_ylim(bottom=0)
        rate.set_title(f"{model}: throughput", fontsize=9)
        for ax in (lat, rate):
            ax.set_xscale("log")
            ticks = sorted({p["annotators"] for p in points if p["model"] == model})
            ax.set_xticks(ticks, [str(t) for t in ticks])
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.grid(alpha=0.3)
        lat.legend(fontsize=6, loc="upper left")
        rate.legend(fontsize=6, loc="upper left")
    for ax in axes[-1]:
        ax.set_xlabel("annotators (1 s think time)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("reports", type=Path, nargs="+", help="bench/load.py's JSON files")
    p.add_argument("--plot", type=Path, default=Path("docs/capacity.png"))
    args = p.parse_args()
    points = [q for path in args.reports for q in rows(json.loads(path.read_text()))]
    print(markdown_table(["model", "backend", "annotators", "clicks", "clicks/s", "click -> next p50", "p95",
                          "answer p95", "from the buffer", "busy 503s", "errors"],
                         [[q["model"], q["backend"], q["annotators"], q["clicks"], q["clicks_per_s"], q["p50"],
                           q["p95"], q["answer_p95"], f"{100 * q['buffer']:.0f}%", q["busy"], q["errors"]]
                          for q in points]))
    print()
    print(markdown_table(["model", "backend", "best clicks/s", "against @web"],
                         [[f["model"], f["backend"], f["best_clicks_per_s"], f["vs_web"]]
                          for f in throughput_factors(points)]))
    plot(points, args.plot, "Capacity at 1 s think time, one run per point")


if __name__ == "__main__":
    main()
