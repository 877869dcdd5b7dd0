"""Krippendorff's alpha, pairwise agreement and the per-annotator report, against known and hand-computed values."""

from __future__ import annotations

import pytest

from app.annotation.agreement import agreement_report, krippendorff_alpha, pairwise_agreement

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability": observers A-D by units 1-12, "." = missing
KRIPPENDORFF_2011 = """
1 2 3 3 2 1 4 1 2 . . .
1 2 3 3 2 2 4 1 2 5 . 3
. 3 3 3 2 3 4 2 2 5 1 .
1 2 3 3 2 4 4 1 2 5 1 .
"""


def textbook_units() -> dict[int, list[str]]:
    """The 2011 example as unit -> values, the missing ones dropped."""
    rows = [line.split() for line in KRIPPENDORFF_2011.strip().splitlines()]
    return {u + 1: [row[u] for row in rows if row[u] != "."] for u in range(len(rows[0]))}


def test_textbook_nominal_alpha() -> None:
    """The published nominal alpha is 0.743."""
    units = textbook_units()
    assert units[12] == ["3"]
    assert round(krippendorff_alpha(units), 3) == 0.743
    # unit 12 has one value, so dropping it changes nothing
    assert krippendorff_alpha({u: v for u, v in units.items() if u != 12}) == krippendorff_alpha(units)


def test_hand_computed_alpha() -> None:
    """Two coders on [a,a], [a,b], [b,b], [b,b]."""
    # coincidences: o_aa = 2, o_ab = o_ba = 1, o_bb = 4, so n_a = 3, n_b = 5, n = 8;
    # alpha = 1 - (n - 1) * (o_ab + o_ba) / (2 * n_a * n_b) = 1 - 7 * 2 / 30 = 8 / 15
    assert krippendorff_alpha({1: ["a", "a"], 2: ["a", "b"], 3: ["b", "b"], 4: ["b", "b"]}) == pytest.approx(8 / 15)
    # always disagreeing is worse than chance: o_ab = o_ba = 2, n_a = n_b = 2, alpha = 1 - 3 * 4 / 8
    assert krippendorff_alpha({1: ("a", "b"), 2: ("b", "a")}) == pytest.approx(-0.5)


def test_alpha_edge_cases() -> None:
    """Perfect agreement is 1; one value everywhere or nothing pairable is undefined."""
    assert krippendorff_alpha({1: ["a", "a", "a"], 2: ["b", "b"], 3: ["c", "c"]}) == 1.0
    assert krippendorff_alpha({1: ["a", "a"], 2: ["a", "a", "a"]}) is None
    assert krippendorff_alpha({1: ["a"], 2: ["b"], 3: []}) is None
    assert krippendorff_alpha({}) is None


def test_pairwise_agreement() -> None:
    """Unordered pairs within each unit; units with fewer than two labels add none."""
    assert pairwise_agreement({1: ["x", "x", "y"]}) == (1, 3)
    assert pairwise_agreement({1: ["x", "x", "y"], 2: ["y", "y"], 3: ["z"], 4: ["a", "b"]}) == (2, 5)
    assert pairwise_agreement({}) == (0, 0)


def test_agreement_report() -> None:
    """Overall and per-annotator counts; lone items ignored, a repeated answer replaced by the last one."""
    answers = [
        ("i1", "alice", "x"),
        ("i1", "bob", "x"),
        ("i1", "carol", "y"),
        ("i2", "alice", "y"),
        ("i2", "bob", "x"),
        ("i2", "bob", "y"),  # bob changes his mind: only "y" counts, and it agrees with alice
        ("i3", "carol", "x"),  # nobody else answered i3
        ("i4", "carol", "x"),
        ("i4", "alice", "x"),
        ("i5", "dave", "z"),  # dave overlaps with no one
    ]
    report = agreement_report(answers)
    # counted units: i1 [x, x, y] (1 of 3 pairs agree), i2 [y, y] (1 of 1), i4 [x, x] (1 of 1)
    assert report["items"] == 3
    assert report["answers"] == 7
    assert (report["agreeing_pairs"], report["pairs"]) == (3, 5)
    assert report["pairwise"] == pytest.approx(0.6)
    # only i1 disagrees: observed = (9 - 5) / 2 = 2; n_x = 4, n_y = 3, n = 7, expected = 49 - 25 = 24
    assert report["alpha"] == pytest.approx(1 - 6 * 2 / 24)
    assert report["annotators"] == [
        {"annotator": "alice", "items": 3, "pairs": 4, "agreeing_pairs": 3, "pairwise": 0.75},
        {"annotator": "bob", "items": 2, "pairs": 3, "agreeing_pairs": 2, "pairwise": pytest.approx(2 / 3)},
        {"annotator": "carol", "items": 2, "pairs": 3, "agreeing_pairs": 1, "pairwise": pytest.approx(1 / 3)},
        {"annotator": "dave", "items": 0, "pairs": 0, "agreeing_pairs": 0, "pairwise": None},
    ]


def test_agreement_report_empty() -> None:
    """No answers: zero counts and undefined rates."""
    assert agreement_report([]) == {
        "alpha": None,
        "pairwise": None,
        "agreeing_pairs": 0,
        "pairs": 0,
        "items": 0,
        "answers": 0,
        "annotators": [],
    }


def test_agreement_api_over_overlapping_answers(app, client, users, admin):
    """Two annotators answer the same two comparisons (overlap 2): they agree on one, not on the other."""
    from app.annotation.agreement import krippendorff_alpha

    app.config["ANNOTATION_OVERLAP"] = 2
    a, b = users.create("ann_a"), users.create("ann_b")
    client.post("/api/prompts", json={"prompts": ["Fix the sink.", "Call the bank."]}, headers=admin["headers"])
    def answer(user, comparison, body):
        res = client.post(f"/api/comparisons/{comparison['id']}/answer", json=body, headers=user["headers"])
        assert res.status_code == 201

    # First comparison: both pick the same candidate (found by its text: each sees their own order).
    mine = client.post("/api/comparisons", json={}, headers=a["headers"]).json
    theirs = client.post("/api/comparisons", json={}, headers=b["headers"]).json
    assert mine["prompt"] == theirs["prompt"]
    answer(a, mine, {"candidate_id": mine["candidates"][0]["id"]})
    picked = [mine["candidates"][0]["id"]]
    same = next(c["id"] for c in theirs["candidates"] if c["text"] == mine["candidates"][0]["text"])
    answer(b, theirs, {"candidate_id": same})
    # Second: a candidate against a tie.
    mine = client.post("/api/comparisons", json={}, headers=a["headers"]).json
    theirs = client.post("/api/comparisons", json={}, headers=b["headers"]).json
    assert mine["prompt"] == theirs["prompt"]
    answer(a, mine, {"candidate_id": mine["candidates"][0]["id"]})
    picked.append(mine["candidates"][0]["id"])
    answer(b, theirs, {"verdict": "tie"})
    assert client.get("/api/agreement", headers=a["headers"]).status_code == 403
    report = client.get("/api/agreement", headers=admin["headers"]).json
    assert (report["items"], report["answers"], report["pairs"], report["agreeing_pairs"]) == (2, 4, 2, 1)
    assert report["pairwise"] == 0.5
    # A label is the chosen sample's index; the two items' picks can share one (alpha is then 0), so read them.
    from app.platform.extensions import db
    from app.tables import Candidate

    with app.app_context():
        first, second = (db.session.get(Candidate, cid).sample_index for cid in picked)
    assert report["alpha"] == pytest.approx(krippendorff_alpha({1: [first, first], 2: [second, "tie"]}))
    assert [(r["annotator"], r["items"], r["pairwise"]) for r in report["annotators"]] == [
        ("ann_a", 2, 0.5), ("ann_b", 2, 0.5)]
    assert report["gold"] == {"items": 0, "annotators": []}
    users.login(client, admin["name"])
    page = client.get("/admin/").get_data(as_text=True)
    assert 'id="alpha"' in page and "50% (1 of 2)" in page
