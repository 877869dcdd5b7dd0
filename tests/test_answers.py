"""Your own answers: browse and search them, and change one (replaced, or superseded once a run has read it)."""

from __future__ import annotations

import json

import pytest

from app.platform.extensions import db
from app.tables import AnswerChange, Preference
from tests.services import BOTH_BACKENDS

pytestmark = pytest.mark.parametrize("backend", BOTH_BACKENDS, indirect=True)


def post(client, path, user, body=None):
    return client.post(path, json=body if body is not None else {}, headers=user["headers"])


def answered(client, user, text: str, pick: int = 0) -> dict:
    comparison = post(client, "/api/comparisons", user, {"prompt": text}).json
    res = post(client, f"/api/comparisons/{comparison['id']}/answer", user,
               {"candidate_id": comparison["candidates"][pick]["id"]})
    assert res.status_code == 201
    return comparison


def test_my_answers_newest_first_searchable_and_paged(client, annotator, users):
    app_config = client.application.config
    app_config["TYPED_PROMPT_LIMIT"] = "100 per minute"
    other = users.create("other", "annotator")
    for text in ("Send the report now.", "Fix the 100% broken build.", "Call me back_soon."):
        answered(client, annotator, text)
    answered(client, other, "Send the report now.")
    res = client.get("/api/my/answers", headers=annotator["headers"])
    assert res.status_code == 200 and res.json["total"] == 3
    assert [a["prompt"] for a in res.json["answers"]] == ["Call me back_soon.", "Fix the 100% broken build.",
                                                          "Send the report now."]
    first = res.json["answers"][0]
    assert first["verdict"] == "choice" and first["candidate_id"] == first["candidates"][0]["id"]
    search = lambda q: [a["prompt"] for a in client.get("/api/my/answers", query_string={"q": q},  # noqa: E731
                                                          headers=annotator["headers"]).json["answers"]]
    assert search("REPORT") == ["Send the report now."]
    assert search("%") == ["Fix the 100% broken build."] and search("_") == ["Call me back_soon."]
    assert search("nothing like it") == []
    page = client.get("/api/my/answers?limit=1&offset=1", headers=annotator["headers"]).json
    assert [a["prompt"] for a in page["answers"]] == ["Fix the 100% broken build."] and page["total"] == 3
    for bad in ("limit=0", "limit=101", "offset=-1", "limit=x", "q=" + "a" * 201, "q=%00"):
        res = client.get(f"/api/my/answers?{bad}", headers=annotator["headers"])
        assert res.status_code == 400 and res.json["error"], bad


def test_a_change_replaces_until_a_run_read_it_then_supersedes(app, client, annotator, users):
    from app.tables import TrainingRun

    comparison = answered(client, annotator, "Send the report now.")
    cid, [a, b, c] = comparison["id"], [x["id"] for x in comparison["candidates"]]
    path = f"/api/comparisons/{cid}/answer"
    res = client.put(path, json={"candidate_id": b, "also_good": [c]}, headers=annotator["headers"])
    assert res.status_code == 200 and res.json["mode"] == "replaced" and res.json["candidate_id"] == b
    first_id = res.json["id"]
    assert client.put(path, json={"candidate_id": b, "also_good": [c]},
                      headers=annotator["headers"]).json["mode"] == "unchanged"
    # A run snapshots it: the next change leaves that row to the run and answers anew.
    with app.app_context():
        db.session.add(TrainingRun(id="r1", requested_by="adm", status="succeeded",
                                   snapshot={"max_preference_id": first_id}))
        db.session.commit()
    res = client.put(path, json={"verdict": "all_bad"}, headers=annotator["headers"])
    assert res.status_code == 200 and res.json["mode"] == "superseded" and res.json["id"] > first_id
    with app.app_context():
        rows = db.session.scalars(db.select(Preference).where(Preference.comparison_id == cid)).all()
        assert [(p.verdict, p.chosen_candidate_id) for p in rows] == [("all_bad", None)]
        history = db.session.scalars(db.select(AnswerChange).order_by(AnswerChange.id)).all()
        assert [(h.mode, h.verdict, h.chosen_candidate_id, h.also_good) for h in history] == [
            ("replaced", "choice", a, None), ("superseded", "choice", b, [c])]
        from app.versions.registry import audit_log

        assert [e.detail["mode"] for e in audit_log(kind="all") if e.action == "answer_changed"] == [
            "superseded", "replaced"]
    # The export carries the current answer only: all bad gives no pair.
    lines = client.get("/api/preferences/export", headers=users.create("adm2", "admin")["headers"]).data
    assert [json.loads(x)["comparison_id"] for x in lines.splitlines()].count(cid) == 0


@pytest.mark.parametrize(("body", "status"), [({"candidate_id": 999999}, 422), ({"verdict": "maybe"}, 400), ({}, 400)])
def test_bad_changes_are_refused_and_change_nothing(client, annotator, body, status):
    comparison = answered(client, annotator, "Fix it.")
    res = client.put(f"/api/comparisons/{comparison['id']}/answer", json=body, headers=annotator["headers"])
    assert res.status_code == status


def test_only_your_own_answered_comparison_can_be_changed(client, annotator, users):
    other = users.create("other", "annotator")
    comparison = answered(client, annotator, "Fix it.")
    body = {"verdict": "tie"}
    assert client.put(f"/api/comparisons/{comparison['id']}/answer", json=body,
                      headers=other["headers"]).status_code == 404
    fresh = post(client, "/api/comparisons", annotator, {"prompt": "Open it."}).json
    res = client.put(f"/api/comparisons/{fresh['id']}/answer", json=body, headers=annotator["headers"])
    assert res.status_code == 409 and "no answer to change" in res.json["error"]
