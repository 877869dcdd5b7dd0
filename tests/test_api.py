"""The JSON API contract, on SQLite and PostgreSQL alike."""

import json

import pytest
from sqlalchemy import func, select

from app.platform.extensions import db
from app.tables import Comparison, Preference
from tests.services import BOTH_BACKENDS

pytestmark = pytest.mark.parametrize("backend", BOTH_BACKENDS, indirect=True)


def post(client, path, user, body=None):
    return client.post(path, json=body if body is not None else {}, headers=user["headers"])


def seed_pool(client, admin, n=3):
    texts = [f"Send me the report {i} now." for i in range(n)]
    res = post(client, "/api/prompts", admin, {"prompts": texts})
    assert res.status_code == 201, res.json
    return texts


def test_healthz(client):
    assert client.get("/healthz").json == {"status": "ok"}


def test_typed_prompt_gives_three_candidates(client, annotator):
    res = post(client, "/api/comparisons", annotator, {"prompt": "Fix this bug now."})
    assert res.status_code == 201
    body = res.json
    assert body["prompt"] == "Fix this bug now."
    assert len(body["candidates"]) == 3 and all({"id", "text"} <= c.keys() for c in body["candidates"])
    # Annotators never learn which model version produced a comparison.
    assert "version" not in json.dumps(body)


def test_comparison_stores_everything_needed_to_train_and_audit(app, client, annotator):
    cid = post(client, "/api/comparisons", annotator, {"prompt": "Fix this bug now."}).json["id"]
    with app.app_context():
        c = db.session.get(Comparison, cid)
        assert c.model_version_id == 1
        assert c.model_prompt == "Rewrite politely: Fix this bug now.\nPolite:"
        assert c.settings["n"] == 3 and {"temperature", "top_p", "max_new_tokens"} <= c.settings.keys()
        assert isinstance(c.seed, int)
        assert sorted(x.position for x in c.candidates) == [0, 1, 2]
        assert sorted(x.sample_index for x in c.candidates) == [0, 1, 2]


def test_pool_hands_out_least_answered_prompt(client, admin, annotator):
    texts = seed_pool(client, admin, 2)
    first = post(client, "/api/comparisons", annotator).json
    post(client, f"/api/comparisons/{first['id']}/answer", annotator, {"verdict": "skip"})  # one open at a time
    second = post(client, "/api/comparisons", annotator).json
    assert {first["prompt"], second["prompt"]} == set(texts)


def test_empty_pool_is_a_clear_404(client, annotator):
    res = post(client, "/api/comparisons", annotator)
    assert res.status_code == 404 and "pool is empty" in res.json["error"]


def test_answer_is_stored_once_even_when_repeated(app, client, annotator):
    c = post(client, "/api/comparisons", annotator, {"prompt": "Sign the contract."}).json
    pick = {"candidate_id": c["candidates"][1]["id"]}
    first = post(client, f"/api/comparisons/{c['id']}/answer", annotator, pick)
    again = post(client, f"/api/comparisons/{c['id']}/answer", annotator, pick)
    assert first.status_code == 201 and again.status_code == 200
    assert first.json["id"] == again.json["id"]
    other = post(client, f"/api/comparisons/{c['id']}/answer", annotator, {"verdict": "tie"})
    assert other.status_code == 409
    with app.app_context():
        assert db.session.scalar(select(func.count(Preference.id))) == 1


@pytest.mark.parametrize("verdict", ["tie", "all_bad", "skip"])
def test_verdicts(client, annotator, verdict):
    c = post(client, "/api/comparisons", annotator, {"prompt": "Check the notes."}).json
    res = post(client, f"/api/comparisons/{c['id']}/answer", annotator, {"verdict": verdict})
    assert res.status_code == 201 and res.json["verdict"] == verdict and res.json["candidate_id"] is None


@pytest.mark.parametrize("body,status", [
    ({}, 400),
    ({"verdict": "great"}, 400),
    ({"candidate_id": "1"}, 400),
    ({"candidate_id": True}, 400),
    ({"candidate_id": 1, "verdict": "tie"}, 400),
    ({"candidate_id": 999999}, 422),
    ({"verdict": "tie", "also_good": [1]}, 400),
    ({"candidate_id": 1, "also_good": [1]}, 400),
    ({"candidate_id": 1, "also_good": [2, 2]}, 400),
    ({"candidate_id": 1, "also_good": "2"}, 400),
    ({"candidate_id": 1, "also_good": list(range(2, 40))}, 400),
])
def test_bad_answers_store_nothing(app, client, annotator, body, status):
    c = post(client, "/api/comparisons", annotator, {"prompt": "Clean the kitchen."}).json
    res = post(client, f"/api/comparisons/{c['id']}/answer", annotator, body)
    assert res.status_code == status and res.json["error"]
    with app.app_context():
        assert db.session.scalar(select(func.count(Preference.id))) == 0


def test_other_acceptable_candidates_can_be_marked_beside_the_best(app, client, annotator):
    c = post(client, "/api/comparisons", annotator, {"prompt": "Water the plants."}).json
    best, fine, _ = (x["id"] for x in c["candidates"])
    path = f"/api/comparisons/{c['id']}/answer"
    unknown = post(client, path, annotator, {"candidate_id": best, "also_good": [10**9]})
    assert unknown.status_code == 422 and "not part of comparison" in unknown.json["error"]
    res = post(client, path, annotator, {"candidate_id": best, "also_good": [fine]})
    assert res.status_code == 201 and res.json["also_good"] == [fine] and res.json["candidate_id"] == best
    with app.app_context():
        assert db.session.scalars(select(Preference)).one().also_good == [fine]


def test_unknown_and_foreign_comparisons_are_404(client, users, annotator):
    other = users.create("other", "annotator")
    c = post(client, "/api/comparisons", other, {"prompt": "Print the slides."}).json
    assert post(client, "/api/comparisons/424242/answer", annotator, {"verdict": "tie"}).status_code == 404
    res = post(client, f"/api/comparisons/{c['id']}/answer", annotator, {"candidate_id": c["candidates"][0]["id"]})
    assert res.status_code == 404


def test_undo_only_the_latest_answer(app, client, annotator):
    a = post(client, "/api/comparisons", annotator, {"prompt": "Share the photos."}).json
    b = post(client, "/api/comparisons", annotator, {"prompt": "Return the order."}).json
    post(client, f"/api/comparisons/{a['id']}/answer", annotator, {"verdict": "tie"})
    post(client, f"/api/comparisons/{b['id']}/answer", annotator, {"candidate_id": b["candidates"][0]["id"]})
    assert post(client, f"/api/comparisons/{a['id']}/undo", annotator).status_code == 409
    res = post(client, f"/api/comparisons/{b['id']}/undo", annotator)
    assert res.status_code == 200 and res.json["id"] == b["id"]
    with app.app_context():
        assert db.session.scalar(select(Preference.comparison_id)) == a["id"]
    # Undone, it can be answered differently.
    assert post(client, f"/api/comparisons/{b['id']}/answer", annotator, {"verdict": "skip"}).status_code == 201


def test_export_two_pairs_per_click_and_none_for_verdicts(client, admin, annotator):
    c1 = post(client, "/api/comparisons", annotator, {"prompt": "Book the tickets."}).json
    c2 = post(client, "/api/comparisons", annotator, {"prompt": "Update the website."}).json
    best = c1["candidates"][2]
    post(client, f"/api/comparisons/{c1['id']}/answer", annotator, {"candidate_id": best["id"]})
    post(client, f"/api/comparisons/{c2['id']}/answer", annotator, {"verdict": "all_bad"})
    res = client.get("/api/preferences/export", headers=admin["headers"])
    assert res.status_code == 200 and res.mimetype == "application/x-ndjson"
    pairs = [json.loads(line) for line in res.get_data(as_text=True).splitlines()]
    assert len(pairs) == 2
    others = {c["text"] for c in c1["candidates"]} - {best["text"]}
    assert {p["rejected"] for p in pairs} == {" " + t for t in others}
    assert all(p["chosen"] == " " + best["text"] for p in pairs)
    assert all(p["prompt"] == "Rewrite politely: Book the tickets.\nPolite:" for p in pairs)


def test_import_prompts_counts_and_dedupes(client, admin):
    res = post(client, "/api/prompts", admin, {"prompts": ["a b c", "d e f", "a b c"]})
    assert res.status_code == 201 and res.json["imported"] == 2
    assert post(client, "/api/prompts", admin, {"prompts": ["a b c"]}).json["imported"] == 0


@pytest.mark.parametrize("body", [{"prompts": []}, {"prompts": "abc"}, {"prompts": ["ok", ""]}, {"prompts": [1]}, {}])
def test_import_is_all_or_nothing(client, admin, body):
    res = post(client, "/api/prompts", admin, body)
    assert res.status_code == 400, res.json
    assert client.post("/api/comparisons", json={}, headers=admin["headers"]).status_code == 404


def test_openapi_lists_the_contract(client):
    spec = client.get("/api/openapi.json").json
    assert spec["openapi"].startswith("3.")
    for path in ("/api/comparisons", "/api/comparisons/{id}/answer", "/api/preferences/export", "/api/prompts",
                 "/api/training-runs", "/api/training-runs/{id}", "/api/model-versions",
                 "/api/model-versions/{id}/activate"):
        assert path in spec["paths"]


def test_openapi_describes_every_api_route(app, client):
    """A route added without a spec entry fails here: the spec is hand-written, so it must be checked."""
    import re

    spec = client.get("/api/openapi.json").json["paths"]
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/") and rule.rule != "/api/openapi.json":
            path = re.sub(r"<(?:\w+:)?\w+>", "{id}", rule.rule)
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                assert method.lower() in spec.get(path, {}), f"{method} {path} is not in the OpenAPI spec"


def test_auth_401_and_403(client, annotator):
    assert client.post("/api/comparisons", json={}).status_code == 401
    assert client.post("/api/comparisons", json={}, headers={"Authorization": "Bearer nope"}).status_code == 401
    assert client.get("/api/preferences/export", headers=annotator["headers"]).status_code == 403
    assert post(client, "/api/prompts", annotator, {"prompts": ["x"]}).status_code == 403


def test_browser_session_needs_csrf_on_api_writes(client, users, annotator):
    users.login(client, "ann")
    res = client.post("/api/comparisons", json={"prompt": "Fix this bug now."})
    assert res.status_code == 400 and "CSRF" in res.json["error"]
