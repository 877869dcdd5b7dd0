"""Handing out comparisons: one open pool comparison per annotator, and a per-user bound on typed prompts."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.tables import Comparison
from tests.services import BOTH_BACKENDS

pytestmark = pytest.mark.parametrize("backend", BOTH_BACKENDS, indirect=True)


def post(client, path, user, body=None):
    return client.post(path, json=body if body is not None else {}, headers=user["headers"])


def test_next_returns_the_pending_comparison_until_it_is_answered(app, client, admin, annotator):
    """POST {} again without answering hands back the same comparison, claiming nothing more; an answer (a skip
    too) lets the next one through. Thirty requests in a row claim one comparison, not thirty."""
    post(client, "/api/prompts", admin, {"prompts": [f"Send me the report {i} now." for i in range(5)]})
    first = post(client, "/api/comparisons", annotator)
    assert first.status_code == 201
    for _ in range(30):
        again = post(client, "/api/comparisons", annotator)
        assert again.status_code == 201 and again.json["id"] == first.json["id"]
        assert again.json["candidates"] == first.json["candidates"]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Comparison)) == 1
    skip = post(client, f"/api/comparisons/{first.json['id']}/answer", annotator, {"verdict": "skip"})
    assert skip.status_code == 201
    second = post(client, "/api/comparisons", annotator)
    assert second.status_code == 201 and second.json["id"] != first.json["id"]


def test_a_typed_prompt_is_not_held_back_by_a_pending_one(app, client, admin, annotator):
    """Typing an input always samples it; once it is answered, Next returns to the pool comparison left open."""
    post(client, "/api/prompts", admin, {"prompts": ["Close the door."]})
    pool = post(client, "/api/comparisons", annotator).json
    typed = post(client, "/api/comparisons", annotator, {"prompt": "Fix the build now."}).json
    assert typed["id"] != pool["id"] and typed["prompt"] == "Fix the build now."
    post(client, f"/api/comparisons/{typed['id']}/answer", annotator, {"candidate_id": typed["candidates"][0]["id"]})
    assert post(client, "/api/comparisons", annotator).json["id"] == pool["id"]


def test_typed_prompts_are_limited_per_user_with_a_clear_429(app, users, annotator):
    """Beyond TYPED_PROMPT_LIMIT a user's typed prompts are refused with 429 and a reason; another user, and the
    pool, are not affected. The 429 is in the spec, so the spec-checked client checks its shape too."""
    app.config["TYPED_PROMPT_LIMIT"] = "3 per minute"
    client = app.test_client()
    other = users.create("other", "annotator")
    statuses = [post(client, "/api/comparisons", annotator, {"prompt": f"Print page {i} now."}).status_code
                for i in range(5)]
    assert statuses == [201, 201, 201, 429, 429]
    refused = post(client, "/api/comparisons", annotator, {"prompt": "Print it."})
    assert refused.status_code == 429
    assert "too many typed prompts" in refused.json["error"] and "3 per minute" in refused.json["error"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 61  # a one-minute window, rounded up
    assert post(client, "/api/comparisons", other, {"prompt": "Print it."}).status_code == 201
    with app.app_context():
        made = db.session.scalar(select(func.count()).select_from(Comparison)
                                 .where(Comparison.user_id == annotator["id"]))
    assert made == 3
