"""One source for the API's shapes: the spec, request validation and the admin form all read app.web.schemas."""

import re

import pytest

from app.platform.exceptions import BadInput
from app.tables import VERDICTS
from app.web.schemas import AnswerBody, TrainingOverrides, override_bounds, parse
from tests.conftest import SpecCheckedClient, response_problem


@pytest.fixture
def spec(client):
    return client.get("/api/openapi.json").json


def make_run(app) -> dict:
    """A stored run as the API shows it."""
    from app.platform.extensions import db
    from app.tables import TrainingRun
    from app.training.jobs import training_config
    from app.web.schemas import run_body as training_run

    with app.app_context():
        run = TrainingRun(id="r1", requested_by="adm", config=training_config({"beta": 0.1}),
                          snapshot={"clicks": 1, "pairs": 2})
        db.session.add(run)
        db.session.commit()
        return training_run(run)


def test_the_spec_has_the_full_training_run(app, spec):
    run = make_run(app)
    schema = spec["components"]["schemas"]["TrainingRun"]
    assert set(schema["required"]) == set(run) == set(schema["properties"])
    assert response_problem(spec, method="GET", path="/api/training-runs/r1", status=200,
                            mimetype="application/json", body=run) is None


@pytest.mark.parametrize(("change", "found"), [
    (lambda run: run.pop("status"), '"status" is a required property'),
    (lambda run: run.update(status="lost"), "status"),
    (lambda run: run.update(extra=1), "'extra' was unexpected"),
    (lambda run: run.update(version_id="2"), "version_id"),
])
def test_a_drifting_answer_is_caught(app, spec, change, found):
    run = make_run(app)
    change(run)
    problem = response_problem(spec, method="GET", path="/api/training-runs/r1", status=200,
                               mimetype="application/json", body=run)
    assert problem and found in problem and "/api/training-runs/{id}" in problem


def test_undocumented_status_and_media_type_are_caught(spec):
    error = {"error": "x", "status": 418}
    problem = response_problem(spec, method="GET", path="/api/progress", status=418, mimetype="application/json",
                               body=error)
    assert "does not list" in problem
    problem = response_problem(spec, method="GET", path="/api/progress", status=200, mimetype="text/html", body=None)
    assert "text/html" in problem
    # Routes the spec does not describe are not judged.
    assert response_problem(spec, method="GET", path="/admin/", status=200, mimetype="text/html", body=None) is None


def test_override_bounds_are_one_table_for_spec_validation_and_form(app, client, users, admin, spec):
    bounds = override_bounds()
    assert set(bounds) == {"beta", "epochs", "learning_rate"}
    properties = spec["components"]["schemas"]["TrainingOverrides"]["properties"]
    for name, b in bounds.items():
        [number] = [s for s in properties[name]["anyOf"] if s["type"] != "null"]
        assert (number["minimum"], number["maximum"]) == (b["min"], b["max"])
        assert parse(TrainingOverrides, {name: b["max"]}).config_values()
        with pytest.raises(BadInput, match=f"{name} must be between"):
            parse(TrainingOverrides, {name: b["max"] * 2})
    users.login(client, "adm")
    page = client.get("/admin/").get_data(as_text=True)
    for name, b in bounds.items():
        tag = re.search(rf'<input name="{name}"[^>]*>', page).group(0)
        assert f'min="{b["min"]}"' in tag and f'max="{b["max"]}"' in tag and f'step="{b["step"]}"' in tag


def test_the_admin_form_gives_the_apis_message(app, client, users, admin):
    users.login(client, "adm")
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/admin/").get_data(as_text=True)).group(1)
    res = client.post("/admin/retrain", data={"csrf_token": token, "epochs": "0"}, follow_redirects=True)
    assert "epochs must be between 1 and 50" in res.get_data(as_text=True)
    res = client.post("/admin/retrain", data={"csrf_token": token, "beta": "high"}, follow_redirects=True)
    assert "beta must be a number" in res.get_data(as_text=True)


def test_overrides_keep_json_types_strict():
    assert parse(TrainingOverrides, {"epochs": 3.0, "beta": 1, "lora": False}).config_values() == {
        "epochs": 3, "beta": 1.0, "lora": False}
    assert parse(TrainingOverrides, {"learning_rate": 1e-3, "beta": None}).config_values() == {"lr": 1e-3}
    for body, message in [({"beta": True}, "beta must be a number"), ({"epochs": "3"}, "epochs must be a number"),
                          ({"lora": 1}, "true or false"), ({"x": 1, "a": 2}, "unknown fields: a, x; allowed: beta")]:
        with pytest.raises(BadInput, match=message):
            parse(TrainingOverrides, body)


def test_verdicts_come_from_the_table(spec):
    schemas = spec["components"]["schemas"]
    assert tuple(schemas["AnswerResult"]["properties"]["verdict"]["enum"]) == VERDICTS
    [given] = [s for s in schemas["AnswerBody"]["properties"]["verdict"]["anyOf"] if s["type"] != "null"]
    assert set(given["enum"]) == set(VERDICTS) - {"choice"}
    assert parse(AnswerBody, {"candidate_id": 3, "latency_ms": "slow"}).latency_ms is None


def test_the_suites_clients_check_every_answer(app, client, annotator):
    """The `app` fixture's clients fail the test on an answer that drifted from the spec."""
    assert isinstance(app.test_client(), SpecCheckedClient)
    app.view_functions["api.progress"] = lambda: {"mine": 0}  # no longer the documented Progress
    with pytest.raises(AssertionError, match="GET /api/progress .* required property"):
        client.get("/api/progress", headers=annotator["headers"])


def test_every_body_goes_through_its_model(app):
    """A body that does not match its documented model is a bug found where it is built, not by a client."""
    import pydantic

    from app.web.schemas import Progress

    assert Progress.respond({"mine": 1, "total": 2, "pool": 3, "pool_answered": 1, "remaining": 2}) == {
        "mine": 1, "total": 2, "pool": 3, "pool_answered": 1, "remaining": 2}
    with pytest.raises(pydantic.ValidationError):
        Progress.respond({"mine": 1, "total": 2, "pool": 3})  # a field missing
    with pytest.raises(pydantic.ValidationError):
        Progress.respond({"mine": 1, "total": 2, "pool": 3, "pool_answered": 1, "remaining": 2, "extra": 0})


def test_an_older_runs_settings_are_still_shown(app):
    """A run stored before a setting existed is listed as it was stored, not a 500."""
    from app.platform.extensions import db
    from app.tables import TrainingRun
    from app.training.jobs import training_config
    from app.web.schemas import run_body as training_run

    with app.app_context():
        old = {k: v for k, v in training_config().items() if k != "min_p"}
        run = TrainingRun(id="old", requested_by="adm", config=old, snapshot={"clicks": 1, "pairs": 2})
        db.session.add(run)
        db.session.commit()
        assert training_run(run)["config"] == old
