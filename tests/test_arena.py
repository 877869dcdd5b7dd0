"""The arena: blind battles between two versions, votes, the leaderboard, pairs, prefetch and vote export."""

from __future__ import annotations

import json
import threading

import pytest

from tests.conftest import install_child
from tests.services import BOTH_BACKENDS


@pytest.fixture
def two_versions(app, starter_dir):
    """Version 2 (a child of the starter, version 1) is active: the default pair is (1, 2)."""
    install_child(app, starter_dir["gpt2"], number=2, parent=1)
    return (1, 2)


def battle(client, user, prompt="Fix the build now."):
    res = client.post("/api/arena/battles", json={"prompt": prompt} if prompt else {}, headers=user["headers"])
    assert res.status_code == 201, res.json
    return res.json


def test_a_battle_is_blind_and_pits_the_two_versions(app, client, annotator, operator, two_versions):
    from app.platform.extensions import db
    from app.tables import ArenaBattle

    b = battle(client, annotator)
    assert set(b) == {"id", "prompt", "candidates"} and b["prompt"] == "Fix the build now."
    assert len(b["candidates"]) == 2 and all(set(c) == {"id", "text"} for c in b["candidates"])
    # The annotator's own view of it hides the versions; an operator's reveals them.
    mine = client.get(f"/api/arena/battles/{b['id']}", headers=annotator["headers"]).json
    assert all("version_id" not in c for c in mine["candidates"])
    revealed = client.get(f"/api/arena/battles/{b['id']}", headers=operator["headers"]).json
    assert sorted(c["version_id"] for c in revealed["candidates"]) == [1, 2]
    with app.app_context():
        stored = db.session.get(ArenaBattle, b["id"])
        assert [c.text for c in stored.candidates] == [c["text"] for c in b["candidates"]]
        assert stored.user_id == annotator["id"] and stored.state == "assigned"


def test_left_and_right_are_randomized(app, client, annotator, two_versions):
    """Twelve battles: the starter is on each side at least once (all on one side: p = 2 * 2**-12)."""
    from app.arena.battles import create_battle, record_vote

    lefts = set()
    with app.app_context():
        for _ in range(12):
            b = create_battle(user_id=annotator["id"], input_text="Call the plumber.")
            lefts.add(b.candidates[0].version_id)
            record_vote(user_id=annotator["id"], battle_id=b.id, candidate_id=None, verdict="tie")
    assert lefts == {1, 2}


def test_votes_are_idempotent_and_conflicts_are_409(client, annotator, users, two_versions):
    b = battle(client, annotator)
    left, right = (c["id"] for c in b["candidates"])
    url = f"/api/arena/battles/{b['id']}/vote"
    first = client.post(url, json={"candidate_id": left, "latency_ms": 900}, headers=annotator["headers"])
    assert first.status_code == 201 and first.json["vote"] == {"verdict": "choice", "candidate_id": left}
    assert client.post(url, json={"candidate_id": left}, headers=annotator["headers"]).status_code == 200
    other = client.post(url, json={"candidate_id": right}, headers=annotator["headers"])
    assert other.status_code == 409 and "different vote" in other.json["error"]
    assert client.post(url, json={"verdict": "tie"}, headers=annotator["headers"]).status_code == 409
    # Someone else's battle is not found; a candidate of another battle does not belong.
    stranger = users.create("stranger")
    assert client.post(url, json={"verdict": "tie"}, headers=stranger["headers"]).status_code == 404
    assert client.get(f"/api/arena/battles/{b['id']}", headers=stranger["headers"]).status_code == 404
    b2 = battle(client, annotator, "Send the invoice.")
    res = client.post(f"/api/arena/battles/{b2['id']}/vote", json={"candidate_id": left}, headers=annotator["headers"])
    assert res.status_code == 422


@pytest.mark.parametrize("body", [{}, {"candidate_id": 1, "verdict": "tie"}, {"verdict": "skip"},
                                  {"verdict": "all_bad"}, {"candidate_id": "1"}, {"nope": 1}])
def test_bad_votes_are_clear_400s(client, annotator, two_versions, body):
    b = battle(client, annotator)
    res = client.post(f"/api/arena/battles/{b['id']}/vote", json=body, headers=annotator["headers"])
    assert res.status_code == 400 and res.json["error"]


def test_an_unvoted_battle_is_handed_back_and_ties_and_both_bad_are_kept(app, client, annotator, two_versions):
    from app.annotation.prompts import import_prompts
    from app.platform.extensions import db
    from app.tables import ArenaBattle

    with app.app_context():
        import_prompts(texts=["Water the plants.", "Lock the door."], source="test", max_chars=200)
    b = battle(client, annotator, prompt=None)
    assert battle(client, annotator, prompt=None)["id"] == b["id"]  # a reload resumes, it does not resample
    client.post(f"/api/arena/battles/{b['id']}/vote", json={"verdict": "both_bad"}, headers=annotator["headers"])
    b2 = battle(client, annotator, prompt=None)
    assert b2["id"] != b["id"]
    client.post(f"/api/arena/battles/{b2['id']}/vote", json={"verdict": "tie"}, headers=annotator["headers"])
    with app.app_context():
        assert sorted(v.verdict for v in db.session.query(ArenaBattle)) == ["both_bad", "tie"]


def test_no_pair_is_a_clear_409(client, annotator):
    res = client.post("/api/arena/battles", json={"prompt": "Hello."}, headers=annotator["headers"])
    assert res.status_code == 409 and "no parent" in res.json["error"]


def test_leaderboard_counts_and_ratings(app, client, annotator, admin, two_versions):
    from app.arena.battles import create_battle, record_vote

    with app.app_context():
        for i in range(10):  # version 2 wins 6, loses 2, ties 1, both bad 1
            b = create_battle(user_id=annotator["id"], input_text=f"Message number {i}.")
            by_version = {c.version_id: c.id for c in b.candidates}
            outcome = ["2"] * 6 + ["1"] * 2 + ["tie", "both_bad"]
            verdict = outcome[i] if outcome[i] in ("tie", "both_bad") else None
            winner = None if verdict else by_version[int(outcome[i])]
            record_vote(user_id=annotator["id"], battle_id=b.id, candidate_id=winner, verdict=verdict)
    assert client.get("/api/arena/leaderboard", headers=annotator["headers"]).status_code == 403
    board = client.get("/api/arena/leaderboard", headers=admin["headers"]).json
    assert board["votes"] == 10
    best, other = board["versions"]
    assert best["version_id"] == 2 and other["version_id"] == 1
    assert (best["battles"], best["wins"], best["ties"], best["both_bad"], best["losses"]) == (10, 6, 1, 1, 2)
    assert (other["wins"], other["losses"]) == (2, 6)
    assert best["rating"] > other["rating"] and best["ci_low"] <= best["rating"] <= best["ci_high"]
    assert board["pairs"] == [{"a": 1, "b": 2, "battles": 10, "a_wins": 2, "b_wins": 6, "ties": 1, "both_bad": 1}]


def test_operators_choose_the_pairs_on_the_versions_page(app, client, users, operator, starter_dir, two_versions):
    from app.arena.matchups import battle_pairs
    from app.platform.extensions import db
    from app.tables import AuditEvent

    install_child(app, starter_dir["gpt2"], number=3, parent=2)  # active: 3, so the default pair is (2, 3)
    with app.app_context():
        assert battle_pairs() == [(2, 3)]
    users.login(client, operator["name"])
    token = client.get("/ops/versions").get_data(as_text=True).split('name="csrf_token" value="')[1].split('"')[0]
    assert client.post("/ops/arena/pairs", data={"a": "3", "b": "1", "csrf_token": token}).status_code == 302
    with app.app_context():
        assert battle_pairs() == [(1, 3)]
        assert db.session.query(AuditEvent).filter_by(action="arena_pair_added").one().detail == {"versions": [1, 3]}
    page = client.get("/ops/versions").get_data(as_text=True)
    assert "<b>1 vs 3</b>" in page and 'id="chosen-pairs"' in page
    # The same version twice, or one that does not exist, is refused with a message and nothing stored.
    client.post("/ops/arena/pairs", data={"a": "2", "b": "2", "csrf_token": token})
    client.post("/ops/arena/pairs", data={"a": "2", "b": "99", "csrf_token": token})
    page = client.get("/ops/versions").get_data(as_text=True)
    assert "choose two different versions" in page and "version 99 not found" in page
    with app.app_context():
        assert battle_pairs() == [(1, 3)]
        from app.arena.matchups import list_pairs

        pair_id = list_pairs()[0].id
    client.post(f"/ops/arena/pairs/{pair_id}/delete", data={"csrf_token": token})
    with app.app_context():
        assert battle_pairs() == [(2, 3)]


def test_versions_page_shows_the_leaderboard_and_its_plot(app, client, users, annotator, operator, two_versions):
    from app.arena.battles import create_battle, record_vote

    with app.app_context():
        b = create_battle(user_id=annotator["id"], input_text="Fix it.")
        record_vote(user_id=annotator["id"], battle_id=b.id, candidate_id=b.candidates[0].id, verdict=None)
    users.login(client, operator["name"])
    page = client.get("/ops/versions").get_data(as_text=True)
    assert 'id="leaderboard"' in page and 'id="ratings-plot"' in page
    assert page.count('<circle class="point"') == 2 and "1 votes so far" in page


def test_resident_versions_are_capped(app, client, annotator, starter_dir, two_versions):
    """With a cap of 1 and battles against two other versions, one other version is resident at a time."""
    from app.arena.battles import create_battle
    from app.arena.matchups import add_pair
    from app.versions.serving import get_holder

    install_child(app, starter_dir["gpt2"], number=3, parent=2)  # active: 3
    app.config["ARENA_RESIDENT_VERSIONS"] = 1
    with app.app_context():
        add_pair(a=3, b=1, actor="test")
        create_battle(user_id=annotator["id"], input_text="One.")
        assert get_holder(app).status()["resident"] == [1]
        from app.arena.matchups import remove_pair

        remove_pair(pair_id=1, actor="test")
        add_pair(a=3, b=2, actor="test")
        b = create_battle(user_id=annotator["id"], input_text="Two.")
        assert sorted(c.version_id for c in b.candidates) == [2, 3]
        assert get_holder(app).status()["resident"] == [2]


def test_the_prefetcher_fills_the_arena_while_it_is_in_use(app, annotator, users, two_versions):
    from app.annotation.prompts import import_prompts
    from app.arena.battles import claim_ready, create_battle
    from app.platform.extensions import db
    from app.tables import ArenaBattle
    from app.versions.prefetch import fill_arena

    with app.app_context():
        import_prompts(texts=[f"Clean room {i}." for i in range(6)], source="test", max_chars=200)
    assert fill_arena(app, limit=4, batch=4) == 0  # nobody battled yet: nothing is generated
    with app.app_context():
        create_battle(user_id=annotator["id"])
    assert fill_arena(app, limit=4, batch=4) == 4
    with app.app_context():
        ready = db.session.query(ArenaBattle).filter_by(state="ready").all()
        assert len(ready) == 4 and all(sorted(c.version_id for c in b.candidates) == [1, 2] for b in ready)
        other = users.create("other")
        claimed = claim_ready(user_id=other["id"], pairs=[(1, 2)])
        assert claimed.user_id == other["id"] and claimed.state == "assigned"
        assert claim_ready(user_id=other["id"], pairs=[(1, 3)]) is None  # not a current pair


def test_votes_export_as_trl_pairs_with_both_versions(app, client, annotator, admin, two_versions):
    from app.arena.battles import create_battle, record_vote

    with app.app_context():
        b = create_battle(user_id=annotator["id"], input_text="Pay the rent.")
        winner, loser = b.candidates
        record_vote(user_id=annotator["id"], battle_id=b.id, candidate_id=winner.id, verdict=None)
        tie = create_battle(user_id=annotator["id"], input_text="Walk the dog.")
        record_vote(user_id=annotator["id"], battle_id=tie.id, candidate_id=None, verdict="tie")
        expected = {"prompt": winner.model_prompt, "chosen": " " + winner.text, "rejected": " " + loser.text,
                    "input": "Pay the rent.", "battle_id": b.id, "chosen_version_id": winner.version_id,
                    "rejected_version_id": loser.version_id}
    res = client.get("/api/arena/export", headers=admin["headers"])
    lines = [json.loads(line) for line in res.get_data(as_text=True).splitlines()]
    if winner.text == loser.text:  # the two versions are the same weights: an identical pair is no pair
        assert lines == []
    else:
        assert len(lines) == 1 and lines[0].pop("voted_at").startswith("20") and lines == [expected]
    # Clicks' export is unchanged by votes.
    assert client.get("/api/preferences/export", headers=admin["headers"]).get_data(as_text=True) == ""


@pytest.mark.parametrize("backend", BOTH_BACKENDS, indirect=True)
def test_concurrent_votes_store_exactly_one(app, annotator, two_versions):
    """Eight threads vote on one battle, half for each side: one vote is stored, the rest get 200 or 409."""
    from app.arena.battles import create_battle, record_vote
    from app.platform.exceptions import BadInput
    from app.platform.extensions import db
    from app.tables import ArenaBattle

    with app.app_context():
        b = create_battle(user_id=annotator["id"], input_text="Ship it.")
        ids = [c.id for c in b.candidates]
    results, barrier = [], threading.Barrier(8)

    def cast(i):
        with app.app_context():
            barrier.wait()
            try:
                results.append(("created" if record_vote(user_id=annotator["id"], battle_id=b.id,
                                                         candidate_id=ids[i % 2], verdict=None)[1] else "same",
                                ids[i % 2]))
            except BadInput as exc:
                results.append((exc.status, ids[i % 2]))
            finally:
                db.session.remove()

    threads = [threading.Thread(target=cast, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    created = [r for r in results if r[0] == "created"]
    assert len(results) == 8 and len(created) == 1
    with app.app_context():
        stored = db.session.get(ArenaBattle, b.id)
        assert stored.winner_candidate_id == created[0][1]
    # Every other vote for the same side is a repeat (200); for the other side a conflict (409).
    assert all((r[0] == "same") == (r[1] == created[0][1]) for r in results if r[0] != "created")


def test_an_operators_own_unvoted_battle_stays_blind(client, operator, two_versions):
    b = battle(client, operator)
    mine = client.get(f"/api/arena/battles/{b['id']}", headers=operator["headers"]).json
    assert all("version_id" not in c for c in mine["candidates"])
    client.post(f"/api/arena/battles/{b['id']}/vote", json={"verdict": "tie"}, headers=operator["headers"])
    voted = client.get(f"/api/arena/battles/{b['id']}", headers=operator["headers"]).json
    assert sorted(c["version_id"] for c in voted["candidates"]) == [1, 2]


def test_a_huge_version_id_in_the_pair_form_is_a_message_not_a_500(app, client, users, operator, two_versions):
    users.login(client, operator["name"])
    token = client.get("/ops/versions").get_data(as_text=True).split('name="csrf_token" value="')[1].split('"')[0]
    res = client.post("/ops/arena/pairs", data={"a": "1", "b": "9" * 30, "csrf_token": token}, follow_redirects=True)
    assert res.status_code == 200 and "not found" in res.get_data(as_text=True)


def test_ready_battles_of_a_pair_no_longer_compared_are_retired(app, annotator, users, starter_dir, two_versions):
    """After a promotion the default pair moves on: the old pair's prefetched battles are marked stale, never handed
    out, and the buffer is refilled for the new pair."""
    from app.annotation.prompts import import_prompts
    from app.arena.battles import create_battle
    from app.platform.extensions import db
    from app.tables import ArenaBattle
    from app.versions.prefetch import fill_arena

    with app.app_context():
        import_prompts(texts=[f"Clean room {i}." for i in range(6)], source="test", max_chars=200)
        create_battle(user_id=annotator["id"])
    assert fill_arena(app, limit=4, batch=4) == 4
    install_child(app, starter_dir["gpt2"], number=3, parent=2)  # active 3: the pair is (2, 3) now
    assert fill_arena(app, limit=4, batch=4) == 4
    with app.app_context():
        states = {(b.state, tuple(sorted(c.version_id for c in b.candidates)))
                  for b in db.session.query(ArenaBattle).filter(ArenaBattle.user_id.is_(None))}
    assert states == {("stale", (1, 2)), ("ready", (2, 3))}


def test_the_leaderboard_is_computed_again_only_when_votes_change(app, annotator, two_versions, monkeypatch):
    import app.arena.battles as battles
    from app.arena.battles import create_battle, record_vote, standings

    calls = []
    real = battles.leaderboard
    monkeypatch.setattr(battles, "leaderboard", lambda *a, **k: calls.append(1) or real(*a, **k))
    with app.app_context():
        b = create_battle(user_id=annotator["id"], input_text="One.")
        record_vote(user_id=annotator["id"], battle_id=b.id, candidate_id=None, verdict="tie")
        first = standings()
        assert standings() == first and len(calls) == 1
        b = create_battle(user_id=annotator["id"], input_text="Two.")
        record_vote(user_id=annotator["id"], battle_id=b.id, candidate_id=b.candidates[0].id, verdict=None)
        assert standings()["votes"] == 2 and len(calls) == 2


def test_a_battle_past_the_wait_bound_is_refused_and_spends_nothing(app, client, annotator, two_versions,
                                                                    monkeypatch):
    """Issue 28: battles sample under the same bound as comparisons (they sampled without it): a 503 with
    Retry-After, nothing stored, no generation budget spent; each version's batch is kept on the battle."""
    from app.lm import sampling
    from app.platform.extensions import db
    from app.tables import ArenaBattle

    monkeypatch.setitem(sampling._NOW, "cost", sampling.BatchCost())
    app.config["GENERATION_LIMIT"] = "2 per minute"
    first = battle(client, annotator)  # times a batch
    with app.app_context():
        stored = db.session.get(ArenaBattle, first["id"])
        assert set(stored.settings["batches"]) == {"1", "2"}
        assert all(b["size"] == 1 and b["offset"] == 0 for b in stored.settings["batches"].values())
    client.post(f"/api/arena/battles/{first['id']}/vote", json={"verdict": "tie"}, headers=annotator["headers"])
    app.config["MAX_WAIT_SECONDS"] = 1e-6
    for _ in range(3):
        res = client.post("/api/arena/battles", json={"prompt": "Call Ana at 9."}, headers=annotator["headers"])
        assert res.status_code == 503 and res.headers["Retry-After"] == "1" and "busy" in res.json["error"]
    with app.app_context():
        assert db.session.query(ArenaBattle).count() == 1
    app.config["MAX_WAIT_SECONDS"] = 10.0
    assert battle(client, annotator)["id"] != first["id"]  # the second of two: the refusals spent nothing
