"""Flags: an annotator reports a comparison; its input waits for an admin, who clears it or removes the input."""

from __future__ import annotations

import pytest

from app.platform.extensions import db
from app.tables import Prompt
from tests.services import BOTH_BACKENDS

pytestmark = pytest.mark.parametrize("backend", BOTH_BACKENDS, indirect=True)


def post(client, path, user, body=None):
    return client.post(path, json=body if body is not None else {}, headers=user["headers"])


@pytest.fixture
def pool(app, client, admin):
    app.config["GOLD_RATE"] = 0.0
    app.config["PROGRESS_CACHE_SECONDS"] = 0  # the counters as they are, not as a few seconds ago
    post(client, "/api/prompts", admin, {"prompts": ["Send me the report now.", "Close the door."]})


def test_a_flagged_input_waits_and_an_admin_clears_or_removes_it(app, client, admin, annotator, users, pool):
    other = users.create("other", "annotator")
    comparison = post(client, "/api/comparisons", annotator).json
    flagged = post(client, f"/api/comparisons/{comparison['id']}/flag", annotator,
                   {"reason": "unclear", "comment": "Which report?"})
    assert flagged.status_code == 201 and flagged.json["status"] == "open"
    again = post(client, f"/api/comparisons/{comparison['id']}/flag", annotator, {"reason": "other"})
    assert again.status_code == 200 and again.json["id"] == flagged.json["id"] and again.json["reason"] == "unclear"
    post(client, f"/api/comparisons/{comparison['id']}/answer", annotator, {"verdict": "skip"})

    # Nobody is handed the flagged input, and it is not counted as work left.
    for person, remaining in ((other, 1), (annotator, 0)):  # the other input, answered by the first of them
        shown = post(client, "/api/comparisons", person).json
        assert shown["prompt"] != comparison["prompt"]
        assert shown["progress"]["remaining"] == remaining
        post(client, f"/api/comparisons/{shown['id']}/answer", person, {"verdict": "skip"})
    listed = client.get("/api/flags", headers=admin["headers"]).json["flags"]
    assert [(f["id"], f["annotator"], f["input"], f["comment"]) for f in listed] == [
        (flagged.json["id"], "ann", comparison["prompt"], "Which report?")]

    # Cleared: back in the queue. Flagged again and removed: gone from the pool for good.
    res = post(client, f"/api/flags/{flagged.json['id']}/resolve", admin, {"action": "clear"})
    assert res.status_code == 200 and res.json["status"] == "cleared"
    assert post(client, f"/api/flags/{flagged.json['id']}/resolve", admin, {"action": "clear"}).status_code == 409
    back = post(client, "/api/comparisons", other).json
    assert back["prompt"] == comparison["prompt"]
    second = post(client, f"/api/comparisons/{back['id']}/flag", other, {"reason": "offensive"}).json
    res = post(client, f"/api/flags/{second['id']}/resolve", admin, {"action": "remove_input"})
    assert res.status_code == 200 and res.json["status"] == "removed"
    with app.app_context():
        removed = db.session.scalar(db.select(Prompt).where(Prompt.text == comparison["prompt"]))
        assert removed.removed_at is not None
        from app.annotation.comparisons import next_pool_prompts

        assert [p.text for p in next_pool_prompts(limit=5)] == ["Close the door."]
    assert client.get("/api/flags", headers=admin["headers"]).json["flags"] == []


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"reason": "boring"}, 400, "reason"),
    ({}, 400, "reason"),
    ({"reason": "other", "comment": "x" * 501}, 413, "the limit is 500"),
    ({"reason": "other", "comment": "a\x00b"}, 400, "NUL"),
    ({"reason": "other", "extra": 1}, 400, "extra"),
])
def test_bad_flags_are_clear_errors_and_store_nothing(app, client, annotator, pool, body, status, words):
    comparison = post(client, "/api/comparisons", annotator).json
    res = post(client, f"/api/comparisons/{comparison['id']}/flag", annotator, body)
    assert res.status_code == status and words in res.json["error"], res.json
    with app.app_context():
        from app.tables import Flag

        assert db.session.scalar(db.select(db.func.count(Flag.id))) == 0


def test_only_your_own_comparison_and_only_admins_resolve(client, admin, annotator, users, pool):
    other = users.create("other", "annotator")
    comparison = post(client, "/api/comparisons", annotator).json
    assert post(client, f"/api/comparisons/{comparison['id']}/flag", other, {"reason": "other"}).status_code == 404
    flagged = post(client, f"/api/comparisons/{comparison['id']}/flag", annotator, {"reason": "broken"}).json
    assert post(client, f"/api/flags/{flagged['id']}/resolve", annotator, {"action": "clear"}).status_code == 403
    assert client.get("/api/flags", headers=annotator["headers"]).status_code == 403
    assert post(client, "/api/flags/999/resolve", admin, {"action": "clear"}).status_code == 404
    assert post(client, f"/api/flags/{flagged['id']}/resolve", admin, {"action": "drop"}).status_code == 400


def test_the_desk_migrations_go_down_and_up_keeping_the_data(app, client, annotator, pool):
    """Task revisions, shown_at, flags, removed prompts, answer changes, pseudonyms: down to the revision before
    them and up again, on SQLite and Postgres, with answered and open comparisons in the tables it rebuilds (SQLite
    rebuilt them with foreign keys on: it refused, or cascaded the candidates away). A user from before gets a
    pseudonym; revision 1 is there again."""
    from flask_migrate import downgrade, upgrade
    from sqlalchemy import inspect

    from app.tables import Candidate, Comparison, Preference, TaskRevision, User

    answered = post(client, "/api/comparisons", annotator).json
    post(client, f"/api/comparisons/{answered['id']}/answer", annotator, {"verdict": "tie"})
    post(client, "/api/comparisons", annotator)  # open: candidates and no answer

    def tables() -> set[str]:
        with db.engine.connect() as conn:
            return set(inspect(conn).get_table_names())

    def counts() -> tuple[int, int, int]:
        found = tuple(db.session.scalar(db.select(db.func.count()).select_from(t))
                      for t in (Comparison, Candidate, Preference))
        db.session.remove()  # no open transaction: it would hold the migration's ALTER TABLE on Postgres
        return found

    with app.app_context():
        before = counts()
        assert before == (2, 6, 1)
        db.session.remove()
        downgrade(revision="c4a9e2d7b1f3")
        assert counts() == before
        assert not {"task_revisions", "flags", "answer_changes"} & tables()
        upgrade()
        assert {"task_revisions", "flags", "answer_changes"} <= tables() and counts() == before
        user = db.session.get(User, annotator["id"])
        assert user.name == "ann" and user.pseudonym.startswith("a-")
        assert [t.id for t in db.session.scalars(db.select(TaskRevision))] == [1]
        db.session.add(TaskRevision(question="Q", guidelines="G", system_prompt="", author="t"))
        db.session.commit()  # the sequence was moved past revision 1 (Postgres)
