"""What the probe samples add to the gate's diversity check: for each version of kept loop runs, the standard error of
the paired drop over the gate's own inputs alone, against the one the gate used with the probe inputs beside them.

    PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python bench/loop.py ... --keep bench/out/keep
    PYTHONPATH=. .venv/bin/python bench/gate_probes.py bench/out/keep/*/ [--out bench/out/gate_probes.json]

Nothing is sampled again. The gate records the drop's mean and standard error over all its inputs; the probe inputs'
differences are recomputed from both versions' stored raw probe samples (the run's database), on the probe inputs
the run did not train on (the run's own pairs and split, worker/plan.run_pairs), and taken out of the recorded sums:
what remains is the check over the gate's own inputs, as it would have read without the probes (it would then have
sampled the probe inputs among its own, so the inputs differ a little; the count and the samples per input do not).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

from bench.common import OUT, markdown_table


def without(*, mean: float, se: float, n: int, removed: list[float]) -> tuple[float, float, int]:
    """(mean, standard error, count) of n paired differences with mean `mean` and standard error `se`, after taking
    out the differences `removed` (which are among them)."""
    total = mean * n
    squares = se**2 * n * (n - 1) + n * mean**2  # sum of squares: se = sd / sqrt(n), sd^2 = (SS - n mean^2) / (n - 1)
    m = n - len(removed)
    if m < 2:
        raise ValueError(f"{m} differences left: no standard error")
    rest_mean = (total - sum(removed)) / m
    rest_var = (squares - sum(d * d for d in removed) - m * rest_mean**2) / (m - 1)
    return rest_mean, math.sqrt(max(0.0, rest_var) / m), m


def probe_differences(run, version) -> list[float]:
    """The parent's expected distinct minus the version's on each probe input the run did not train on."""
    from app.dataset.pairs import build_pairs
    from app.dataset.snapshot import snapshot_clicks
    from app.platform.extensions import db
    from app.tables import ModelVersion, ProbeSamples
    from app.training.spec import TrainingSpec
    from worker.evaluation import expected_distinct
    from worker.plan import run_pairs

    spec = TrainingSpec.from_dict(run.config)
    parent = db.session.get(ModelVersion, run.parent_version_id)
    train, _ = run_pairs(list(build_pairs(snapshot_clicks(run.snapshot))), spec=spec, parent=parent,
                         snapshot=run.snapshot)
    trained = {p["input"] for p in train}
    rows = {r.version_id: {s["input"]: s["raw"] for s in r.samples}
            for r in db.session.query(ProbeSamples).filter(ProbeSamples.version_id.in_([version.id, parent.id]))}
    mine, theirs = rows[version.id], rows[parent.id]
    k = spec.num_candidates
    return [expected_distinct(theirs[t], k) - expected_distinct(mine[t], k)
            for t in mine if t not in trained and t in theirs]


def measure(folder: Path) -> list[dict]:
    """Each trained version of one kept loop run: the drop's standard error with and without the probe inputs."""
    from app import create_app
    from app.platform.extensions import db
    from app.tables import ModelVersion, TrainingRun

    folder = folder.resolve()
    app = create_app({"SQLALCHEMY_DATABASE_URI": f"sqlite:///{folder / 'live.db'}", "SECRET_KEY": "bench-only",
                      "MODEL_STORE": str(folder / "models"), "REDIS_URL": None})
    out = []
    with app.app_context():
        runs = db.session.query(TrainingRun).filter(TrainingRun.version_id.isnot(None))
        for run in runs.order_by(TrainingRun.version_id):
            version = db.session.get(ModelVersion, run.version_id)
            m = version.metrics
            if not m.get("probe_inputs"):
                continue
            removed = probe_differences(run, version)
            if len(removed) != m["probe_inputs"]:
                raise ValueError(f"{folder.name} v{version.id}: {len(removed)} probe inputs recomputed, "
                                 f"{m['probe_inputs']} recorded")
            mean, se, n = without(mean=m["distinct_drop"], se=m["distinct_drop_se"], n=m["distinct_drop_inputs"],
                                  removed=removed)
            out.append({"run": folder.name, "version": version.id, "probe_inputs": len(removed),
                        "inputs_with": m["distinct_drop_inputs"], "drop_with": m["distinct_drop"],
                        "se_with": m["distinct_drop_se"], "inputs_without": n, "drop_without": mean, "se_without": se})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folders", nargs="+", type=Path, help="loop runs kept with bench/loop.py --keep")
    p.add_argument("--out", type=Path, default=OUT / "gate_probes.json")
    args = p.parse_args()
    rows = [row for folder in args.folders for row in measure(folder)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))
    print(markdown_table(
        ["run", "version", "probe inputs", "inputs: gate's own / with probes", "drop (SE), gate's own",
         "drop (SE), with probes", "SE ratio"],
        [[r["run"], r["version"], r["probe_inputs"], f"{r['inputs_without']} / {r['inputs_with']}",
          f"{r['drop_without']:.3f} ({r['se_without']:.3f})", f"{r['drop_with']:.3f} ({r['se_with']:.3f})",
          f"{r['se_with'] / r['se_without']:.2f}" if r["se_without"] else "-"] for r in rows]))


if __name__ == "__main__":
    main()
