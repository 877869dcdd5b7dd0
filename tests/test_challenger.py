"""Champion and challenger: roles, promote and retire (audited, 409 for anything else), the arena's pairing, the
standing's verdict and the rule that decides, on both backends."""

from __future__ import annotations

import pytest

from app.arena.matchups import battle_pairs
from app.platform.extensions import db
from app.tables import ArenaBattle, ArenaCandidate, AuditEvent, utcnow
from app.versions.registry import (
    active_version_id,
    challenger_version_id,
    set_challenger,
)
from tests.conftest import install_child
from tests.services import BOTH_BACKENDS

pytestmark = pytest.mark.parametrize("backend", BOTH_BACKENDS, indirect=True)


def add_votes(*, champion: int, challenger: int, wins: int, losses: int, ties: int = 0, user_id: int) -> None:
    """Voted battles between the two (the challenger on the left), with texts of equal length."""
    outcomes = ["win"] * wins + ["loss"] * losses + ["tie"] * ties
    for i, outcome in enumerate(outcomes):
        battle = ArenaBattle(input_text=f"input {i}", settings={}, seed=i, state="assigned", user_id=user_id,
                             assigned_at=utcnow())
        battle.candidates = [ArenaCandidate(position=0, version_id=challenger, model_prompt="p", text="one two"),
                             ArenaCandidate(position=1, version_id=champion, model_prompt="p", text="three four")]
        db.session.add(battle)
        db.session.flush()
        battle.verdict, battle.voted_at = ("tie" if outcome == "tie" else "choice"), utcnow()
        if outcome != "tie":
            battle.winner_candidate_id = battle.candidates[0 if outcome == "win" else 1].id
    db.session.commit()


@pytest.fixture
def two(app, starter_dir):
    """Version 2, a child of the starter, ready but not served."""
    install_child(app, starter_dir["gpt2"], number=2, parent=1, activate=False)
    return 2


def actions() -> list[str]:
    return [e.action for e in db.session.query(AuditEvent).order_by(AuditEvent.id)]


def test_roles_promote_and_retire_are_audited(app, client, users, two):
    operator = users.create("opr", "operator")
    with app.app_context():
        assert challenger_version_id() is None
        set_challenger(version_id=two, actor="run:x", reason="passed the gate")
        assert (active_version_id(), challenger_version_id()) == (1, 2)
        # The arena compares the champion with the challenger, and only them, until it is decided.
        assert battle_pairs() == [(1, 2)]
    listed = client.get("/api/model-versions", headers=operator["headers"]).json["versions"]
    roles = {v["id"]: v["role"] for v in listed}
    assert roles == {1: "champion", 2: "challenger"}
    # Only the challenger can be promoted or retired.
    res = client.post("/api/model-versions/1/promote", json={"reason": "no"}, headers=operator["headers"])
    assert res.status_code == 409 and "not the challenger" in res.json["error"]
    assert client.post("/api/model-versions/2/retire", json={"reason": " "},
                       headers=operator["headers"]).status_code == 400
    res = client.post("/api/model-versions/2/promote", json={"reason": "won the arena"}, headers=operator["headers"])
    assert res.status_code == 200 and res.json == {"active": 2, "previous": 1, "reason": "won the arena"}
    with app.app_context():
        assert (active_version_id(), challenger_version_id()) == (2, None)
        assert actions()[-2:] == ["challenger", "promote"]
        promote = db.session.query(AuditEvent).order_by(AuditEvent.id.desc()).first()
        assert (promote.actor, promote.from_version_id, promote.to_version_id) == ("opr", 1, 2)
        # Retire: back to no challenger, the champion keeps serving.
        set_challenger(version_id=1, actor="test", reason="again")
    res = client.post("/api/model-versions/1/retire", json={"reason": "lost"}, headers=operator["headers"])
    assert res.status_code == 200 and res.json == {"standing": None}
    with app.app_context():
        assert (active_version_id(), challenger_version_id()) == (2, None)
        assert actions()[-1] == "challenger_retired"
    assert client.post("/api/model-versions/1/retire", json={"reason": "twice"},
                       headers=operator["headers"]).status_code == 409


def test_one_challenger_at_a_time(app, starter_dir, two):
    install_child(app, starter_dir["gpt2"], number=3, parent=1, activate=False)
    with app.app_context():
        set_challenger(version_id=2, actor="run:a", reason="first")
        set_challenger(version_id=3, actor="run:b", reason="second")
        assert challenger_version_id() == 3
        replaced = db.session.query(AuditEvent).filter_by(action="challenger_replaced").one()
        assert (replaced.from_version_id, replaced.to_version_id) == (2, 3)


def test_standing_and_verdict(app, client, users, two):
    from app.arena.challenger import challenger_standing

    ann = users.create("ann", "annotator")
    with app.app_context():
        set_challenger(version_id=two, actor="test", reason="gate")
        first = challenger_standing()
        assert first["votes"] == 0 and first["verdict"] == "undecided" and first["win_rate"] is None
        add_votes(champion=1, challenger=2, wins=3, losses=2, ties=1, user_id=ann["id"])
        close = challenger_standing()
        assert close["votes"] == 6 and close["wins"] == 3 and close["losses"] == 2 and close["ties"] == 1
        assert close["win_rate"] == pytest.approx(3.5 / 6, abs=1e-3)
        assert close["verdict"] == "undecided"
        add_votes(champion=1, challenger=2, wins=60, losses=5, user_id=ann["id"])
        ahead = challenger_standing()
        champ, ch = ahead["ratings"]
        assert (champ["role"], ch["role"]) == ("champion", "challenger")
        assert ch["ci_low"] > champ["ci_high"] and ahead["verdict"] == "ahead"
    body = client.get("/api/challenger", headers=users.create("adm", "admin")["headers"]).json["standing"]
    assert body["verdict"] == "ahead" and body["votes"] == 71 and body["challenger"] == 2


@pytest.mark.parametrize(("wins", "losses", "done"), [(40, 2, "promoted"), (2, 40, "retired"), (3, 3, None)])
def test_the_rule_decides_after_min_votes(app, users, two, wins, losses, done):
    from app.arena.challenger import decide_by_rule

    ann = users.create("ann", "annotator")
    app.config.update(CHALLENGER_DECIDE="auto", CHALLENGER_MIN_VOTES=wins + losses + 1)
    with app.app_context():
        set_challenger(version_id=two, actor="test", reason="gate")
        add_votes(champion=1, challenger=2, wins=wins, losses=losses, user_id=ann["id"])
        assert decide_by_rule() is None  # one vote short of CHALLENGER_MIN_VOTES
        add_votes(champion=1, challenger=2, wins=1 if wins > losses else 0, losses=0 if wins > losses else 1,
                  user_id=ann["id"])
        assert decide_by_rule() == done
        if done == "promoted":
            assert (active_version_id(), challenger_version_id()) == (2, None)
        elif done == "retired":
            assert (active_version_id(), challenger_version_id()) == (1, None)
        else:
            assert challenger_version_id() == 2
        if done:
            event = db.session.query(AuditEvent).order_by(AuditEvent.id.desc()).first()
            assert event.actor == "arena" and event.reason.startswith("arena rule: ")
    app.config.update(CHALLENGER_DECIDE="manual")


def test_rollback_works_as_before_with_a_challenger_waiting(app, starter_dir, two):
    install_child(app, starter_dir["gpt2"], number=3, parent=1)  # the champion now, a child of 1
    with app.app_context():
        set_challenger(version_id=two, actor="test", reason="gate")
        assert battle_pairs() == [(2, 3)]
    from app.versions.registry import activate_version, rollback

    with app.app_context():
        event = rollback(actor="opr", reason="worse")
        assert (event.from_version_id, event.to_version_id) == (3, 1)
        # The challenger keeps waiting, now against the version that serves.
        assert challenger_version_id() == 2 and battle_pairs() == [(1, 2)]
        # Rolled back onto the challenger itself: it serves, so there is no challenger any more.
        set_challenger(version_id=3, actor="test", reason="again")
        activate_version(version_id=3, actor="opr", reason="by hand")
        assert challenger_version_id() is None
