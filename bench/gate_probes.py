"""What the probe samples add to the gate's diversity check, on kept loop runs: two ways of using them.

    PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python bench/loop.py ... --keep bench/out/keep
    PYTHONPATH=. HF_HUB_OFFLINE=1 .venv/bin/python bench/gate_probes.py bench/out/keep/*/ [--separate]
        [--out bench/out/gate_probes.json]

Pooled (the gate's way): on each probe input the run did not train on, both versions are sampled as the gate samples
(GATE_SAMPLES raw samples, the run's seed plus the input's place), and the paired drop of expected distinct is taken
over those inputs with the gate's samples alone and with the stored raw probe samples pooled in.

--separate, for runs gated with the probe inputs as inputs of their own beside the gate's (commit e643ef2, which
recorded the drop over both): the standard error over the gate's own inputs alone, backed out of the recorded mean,
standard error and count by taking out the probe inputs' differences, recomputed from the stored raw probe samples.
Nothing is sampled. (Without the probes that gate would have sampled the probe inputs among its own, so the inputs
differ a little; their count and samples per input do not.)
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


def probe_inputs(run, version) -> tuple[dict, dict, list[str], object]:
    """(the version's raw probe samples by input, its parent's, the probe inputs the run did not train on, spec)."""
    from app.dataset.pairs import build_pairs
    from app.dataset.snapshot import snapshot_clicks
    from app.platform.extensions import db
    from app.tables import ModelVersion, ProbeSamples
    from app.training.spec import TrainingSpec
    from worker.plan import run_pairs

    spec = TrainingSpec.from_dict(run.config)
    parent = db.session.get(ModelVersion, run.parent_version_id)
    train, _ = run_pairs(list(build_pairs(snapshot_clicks(run.snapshot))), spec=spec, parent=parent,
                         snapshot=run.snapshot)
    trained = {p["input"] for p in train}
    rows = {r.version_id: {s["input"]: s["raw"] for s in r.samples}
            for r in db.session.query(ProbeSamples).filter(ProbeSamples.version_id.in_([version.id, parent.id]))}
    mine, theirs = rows[version.id], rows[parent.id]
    return mine, theirs, [t for t in mine if t not in trained and t in theirs], spec


def separate(run, version) -> dict | None:
    """The recorded drop over the gate's inputs and the probe inputs, and the same with the probe inputs taken out."""
    from worker.evaluation import expected_distinct

    m = version.metrics
    if not m.get("probe_inputs"):
        return None
    mine, theirs, unseen, spec = probe_inputs(run, version)
    removed = [expected_distinct(theirs[t], spec.num_candidates) - expected_distinct(mine[t], spec.num_candidates)
               for t in unseen]
    if len(removed) != m["probe_inputs"]:
        raise ValueError(f"v{version.id}: {len(removed)} probe inputs recomputed, {m['probe_inputs']} recorded")
    mean, se, n = without(mean=m["distinct_drop"], se=m["distinct_drop_se"], n=m["distinct_drop_inputs"],
                          removed=removed)
    return {"probe_inputs": len(removed), "inputs_with": m["distinct_drop_inputs"], "drop_with": m["distinct_drop"],
            "se_with": m["distinct_drop_se"], "inputs_without": n, "drop_without": mean, "se_without": se}


def pooled(run, version, store: Path) -> dict | None:
    """Over the unseen probe inputs: the drop with the gate's samples alone, and with the probe samples pooled in."""
    from app.lm.checkpoint import load_checkpoint
    from worker.evaluation import distinct_drop, expected_distinct, raw_samples

    mine, theirs, unseen, spec = probe_inputs(run, version)
    if len(unseen) < 2:
        return None
    gate = {}
    for name, number in (("candidate", version.id), ("parent", run.parent_version_id)):
        model = load_checkpoint(str(store / str(number)), version_id=number)
        gate[name] = [raw_samples(model, t, samples=spec.gate.samples, seed=spec.seed + i, temperature=spec.temperature,
                                  top_p=spec.top_p, min_p=spec.min_p, max_new_tokens=spec.max_new_tokens,
                                  system_prompt=spec.system_prompt) for i, t in enumerate(unseen)]
    k, stored = spec.num_candidates, {"candidate": mine, "parent": theirs}

    def drop(pool: bool) -> dict:
        by = {name: {t: expected_distinct(raw + (stored[name][t] if pool else []), k)
                     for t, raw in zip(unseen, gate[name], strict=True)} for name in gate}
        return distinct_drop(by["candidate"], by["parent"])

    alone, both = drop(False), drop(True)
    return {"probe_inputs": len(unseen), "samples": spec.gate.samples, "drop_alone": alone["distinct_drop"],
            "se_alone": alone["distinct_drop_se"], "drop_pooled": both["distinct_drop"],
            "se_pooled": both["distinct_drop_se"]}


def measure(folder: Path, *, way: str) -> list[dict]:
    """Each trained version of one kept loop run, measured one way ("pooled" or "separate")."""
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
            row = separate(run, version) if way == "separate" else pooled(run, version, folder / "models")
            if row is not None:
                out.append({"run": folder.name, "version": version.id, **row})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folders", nargs="+", type=Path, help="loop runs kept with bench/loop.py --keep")
    p.add_argument("--separate", action="store_true", help="back out runs gated with the probe inputs on their own")
    p.add_argument("--out", type=Path, default=OUT / "gate_probes.json")
    args = p.parse_args()
    way = "separate" if args.separate else "pooled"
    rows = [row for folder in args.folders for row in measure(folder, way=way)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"way": way, "rows": rows}, indent=2))
    if way == "separate":
        print(markdown_table(
            ["run", "version", "probe inputs", "inputs: gate's own / with probes", "drop (SE), gate's own",
             "drop (SE), with probes", "SE ratio"],
            [[r["run"], r["version"], r["probe_inputs"], f"{r['inputs_without']} / {r['inputs_with']}",
              f"{r['drop_without']:.3f} ({r['se_without']:.3f})", f"{r['drop_with']:.3f} ({r['se_with']:.3f})",
              f"{r['se_with'] / r['se_without']:.2f}" if r["se_without"] else "-"] for r in rows]))
        return
    print(markdown_table(
        ["run", "version", "probe inputs", "drop (SE), gate's samples", "drop (SE), probe samples pooled",
         "SE ratio"],
        [[r["run"], r["version"], r["probe_inputs"], f"{r['drop_alone']:.3f} ({r['se_alone']:.3f})",
          f"{r['drop_pooled']:.3f} ({r['se_pooled']:.3f})",
          f"{r['se_pooled'] / r['se_alone']:.2f}" if r["se_alone"] else "-"] for r in rows]))


if __name__ == "__main__":
    main()
