"""The run spec: fixed by the web at enqueue, rebuilt strictly by the worker."""

import pytest

from app.training.spec import TrainingSpec


def test_the_web_fixes_every_field_of_the_spec(app):
    from app.training.jobs import training_config

    app.config["NUM_CANDIDATES"] = 4
    app.config["TEMPERATURE"] = 0.7
    with app.app_context():
        spec = TrainingSpec.from_dict(training_config({"beta": 0.3}))
    assert spec.beta == 0.3 and spec.num_candidates == 4 and spec.temperature == 0.7
    assert spec.gate.min_distinct == app.config["GATE_MIN_DISTINCT"]


def test_a_stored_spec_with_a_missing_or_unknown_field_is_refused(app):
    from app.training.jobs import training_config

    with app.app_context():
        stored = training_config()
    assert TrainingSpec.from_dict(stored).to_dict() == stored
    with pytest.raises(ValueError, match="missing.*num_candidates"):
        TrainingSpec.from_dict({k: v for k, v in stored.items() if k != "num_candidates"})
    with pytest.raises(ValueError, match="unknown.*surprise"):
        TrainingSpec.from_dict(stored | {"surprise": 1})


def test_every_field_is_documented():
    from dataclasses import fields

    from app.training.spec import GateSpec

    for cls in (TrainingSpec, GateSpec):
        assert all(f.metadata.get("help") for f in fields(cls)), cls
