"""Response bodies built from rows: each through the pydantic model that documents it (app/web/schemas.py,
app/web/arena_schemas.py), so a body and the OpenAPI spec cannot drift apart. The pages' JSON data blocks use the
same bodies as the API."""

from __future__ import annotations

from app.tables import ArenaBattle, Comparison, ModelVersion, Preference, TrainingRun
from app.web import arena_schemas as a
from app.web import schemas as s


def iso(moment) -> str | None:
    """A naive UTC datetime as ISO 8601 with a Z; None stays None."""
    return moment.isoformat() + "Z" if moment else None


def comparison(row: Comparison, *, progress: dict | None = None) -> dict:
    """The annotator's view: no model version, candidates in display order (with progress, after a click)."""
    fields = {"id": row.id, "prompt": row.input_text,
              "candidates": [{"id": c.id, "text": c.text} for c in row.candidates]}
    if progress is None:
        return s.Comparison.respond(fields)
    return s.ComparisonWithProgress.respond(fields, progress=progress)


def answer(pref: Preference, *, progress: dict) -> dict:
    """A stored answer, with the annotator's progress."""
    return s.AnswerResult.respond(id=pref.id, comparison_id=pref.comparison_id, verdict=pref.verdict,
                                  candidate_id=pref.chosen_candidate_id, also_good=pref.also_good or [],
                                  progress=progress)


def battle(row: ArenaBattle, *, reveal: bool = False) -> dict:
    """What the voter sees (no versions); with reveal, each candidate's version; the vote once there is one."""
    fields = {"id": row.id, "prompt": row.input_text,
              "candidates": [{"id": c.id, "text": c.text} | ({"version_id": c.version_id} if reveal else {})
                             for c in row.candidates]}
    if row.verdict is not None:
        fields["vote"] = {"verdict": row.verdict, "candidate_id": row.winner_candidate_id}
    return a.Battle.respond(fields)


def run_fields(run: TrainingRun) -> dict:
    """A run's fields as the TrainingRun model names them."""
    return {
        "id": run.id, "status": run.status, "requested_by": run.requested_by, "config": run.config,
        "snapshot": run.snapshot | {"hash": run.snapshot_hash},
        "parent_version_id": run.parent_version_id, "version_id": run.version_id,
        "progress": run.progress, "metrics": run.metrics, "error": run.error,
        "created_at": iso(run.created_at), "started_at": iso(run.started_at), "finished_at": iso(run.finished_at),
    }


def training_run(run: TrainingRun) -> dict:
    """A run with its settings, data snapshot, progress and metrics."""
    return s.TrainingRun.respond(run_fields(run))


def training_runs(runs: list[TrainingRun]) -> dict:
    """Runs, as listed."""
    return s.TrainingRuns.respond(runs=[run_fields(r) for r in runs])


def version_fields(version: ModelVersion, *, active_id: int | None) -> dict:
    """A version's fields as the ModelVersion model names them."""
    return {
        "id": version.id, "parent_id": version.parent_id, "status": version.status, "active": version.id == active_id,
        "arch": version.arch, "base_model": version.base_model, "run_id": version.run_id, "metrics": version.metrics,
        "pairs": version.manifest.get("pair_count"), "created_at": iso(version.created_at),
        "activated_at": iso(version.activated_at),
    }


def model_versions(versions: list[ModelVersion], *, active_id: int | None) -> dict:
    """Every version with its lineage and whether it is active."""
    return s.ModelVersions.respond(versions=[version_fields(v, active_id=active_id) for v in versions])
