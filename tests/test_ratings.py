"""Bradley–Terry arena ratings: recovery of known strengths, ties as half wins, the prior, bootstrap, counts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from app.arena.ratings import (
    BASE,
    SCALE,
    bootstrap_intervals,
    fit_length_controlled,
    fit_ratings,
    leaderboard,
    length_feature,
    pair_counts,
)


def record(a: str, b: str, *, wins: int = 0, losses: int = 0, ties: int = 0, both_bad: int = 0) -> list[tuple]:
    """Battles of a against b with the given tallies (from a's side)."""
    return [(a, b, "a")] * wins + [(a, b, "b")] * losses + [(a, b, "tie")] * ties + [(a, b, "both_bad")] * both_bad


def diff(ratings: dict, a: str, b: str) -> float:
    """Rating of a minus rating of b."""
    return ratings[a] - ratings[b]


def test_recovers_known_strengths():
    true = {"x": 1000, "y": 1100, "z": 1200}
    names = list(true)
    rng = np.random.default_rng(1)
    battles = []
    for _ in range(3000):
        i, j = rng.choice(3, size=2, replace=False)
        a, b = names[i], names[j]
        p_a = 1 / (1 + 10 ** ((true[b] - true[a]) / SCALE))
        battles.append((a, b, "a" if rng.random() < p_a else "b"))
    fitted = fit_ratings(battles)
    assert sorted(fitted, key=fitted.get) == ["x", "y", "z"]
    for a, b in [("y", "x"), ("z", "y"), ("z", "x")]:
        assert diff(fitted, a, b) == pytest.approx(true[a] - true[b], abs=25)
    # The geometric-mean version sits at BASE.
    assert np.mean(list(fitted.values())) == pytest.approx(BASE)


def test_ties_count_as_half_a_win():
    even = fit_ratings(record("a", "b", ties=10))
    assert even["a"] == pytest.approx(even["b"], abs=1e-9)
    # 6-4 and 5-2-3 both give a a win share of 0.6, so the pure MLE is the same.
    plain = fit_ratings(record("a", "b", wins=6, losses=4), prior=0)
    tied = fit_ratings(record("a", "b", wins=5, ties=2, losses=3), prior=0)
    assert diff(plain, "a", "b") == pytest.approx(diff(tied, "a", "b"), abs=1e-6)
    assert diff(plain, "a", "b") > 0
    # Both-bad is a tie in the ratings too.
    bad = fit_ratings(record("a", "b", wins=5, both_bad=2, losses=3), prior=0)
    assert diff(bad, "a", "b") == pytest.approx(diff(tied, "a", "b"), abs=1e-6)


def test_two_versions_closed_form():
    # W_a = 6 + 2/2 = 7, W_b = 2 + 2/2 = 3.
    battles = record("a", "b", wins=6, ties=2, losses=2)
    assert diff(fit_ratings(battles, prior=0), "a", "b") == pytest.approx(400 * math.log10(7 / 3), abs=1e-6)
    # The default prior adds half a virtual tie: a quarter win each side.
    assert diff(fit_ratings(battles), "a", "b") == pytest.approx(400 * math.log10(7.25 / 3.25), abs=1e-6)


def test_never_winning_version_is_finite_with_the_prior():
    ratings = fit_ratings(record("a", "b", wins=5))
    assert all(math.isfinite(r) for r in ratings.values())
    assert ratings["b"] < ratings["a"]
    assert diff(ratings, "a", "b") == pytest.approx(400 * math.log10(5.25 / 0.25), abs=1e-6)
    # The pure MLE sends it to -inf, but never to NaN.
    pure = fit_ratings(record("a", "b", wins=5), prior=0)
    assert pure["b"] == -math.inf and pure["a"] == BASE


def test_disconnected_components_are_each_centred():
    battles = record("a", "b", wins=3, losses=1) + record("c", "d", wins=1, ties=1)
    for prior in (0.5, 0):
        ratings = fit_ratings(battles, prior=prior)
        assert not any(math.isnan(r) for r in ratings.values())
        assert ratings["a"] + ratings["b"] == pytest.approx(2 * BASE)
        assert ratings["c"] + ratings["d"] == pytest.approx(2 * BASE)
        assert ratings["a"] > ratings["b"] and ratings["c"] > ratings["d"]


MIX = (
    record("a", "b", wins=12, losses=8, ties=4)
    + record("b", "c", wins=10, losses=6, both_bad=2)
    + record("a", "c", wins=8, losses=4)
)


def test_bootstrap_contains_estimate_and_narrows():
    point = fit_ratings(MIX)
    small = bootstrap_intervals(MIX)
    big = bootstrap_intervals(MIX * 10)
    # Same mix, so nearly the same estimate; the prior weighs a little less against 10x the counts.
    point_big = fit_ratings(MIX * 10)
    assert point_big == pytest.approx(point, abs=5)
    for v, r in point.items():
        assert small[v][0] <= r <= small[v][1]
        assert big[v][0] <= point_big[v] <= big[v][1]
        # sqrt(10) ~ 3.2 times narrower in theory; ask for at least 2.
        assert big[v][1] - big[v][0] < (small[v][1] - small[v][0]) / 2


def test_bootstrap_is_deterministic():
    assert bootstrap_intervals(MIX, rounds=50, seed=7) == bootstrap_intervals(MIX, rounds=50, seed=7)
    assert bootstrap_intervals(MIX, rounds=50, seed=7) != bootstrap_intervals(MIX, rounds=50, seed=8)
    assert leaderboard(MIX, rounds=50, seed=3) == leaderboard(MIX, rounds=50, seed=3)


HAND = [
    ("m1", "m2", "a"),
    ("m2", "m1", "a"),
    ("m1", "m2", "tie"),
    ("m1", "m3", "both_bad"),
    ("m3", "m2", "b"),
    ("m3", "m1", "a"),
]


def test_leaderboard_counts():
    rows = leaderboard(HAND, rounds=50)
    by_id = {row["version_id"]: row for row in rows}
    counts = ("battles", "wins", "ties", "both_bad", "losses")
    assert {v: tuple(row[k] for k in counts) for v, row in by_id.items()} == {
        "m1": (5, 1, 1, 1, 2),
        "m2": (4, 2, 1, 0, 1),
        "m3": (3, 1, 0, 1, 1),
    }
    assert [row["rating"] for row in rows] == sorted((row["rating"] for row in rows), reverse=True)
    ratings = fit_ratings(HAND)
    for row in rows:
        assert row["rating"] == round(ratings[row["version_id"]], 1)
        assert row["ci_low"] <= row["rating"] <= row["ci_high"]
    assert leaderboard([]) == []


def test_pair_counts():
    assert pair_counts(HAND) == [
        {"a": "m1", "b": "m2", "battles": 3, "a_wins": 1, "b_wins": 1, "ties": 1, "both_bad": 0},
        {"a": "m1", "b": "m3", "battles": 2, "a_wins": 0, "b_wins": 1, "ties": 0, "both_bad": 1},
        {"a": "m2", "b": "m3", "battles": 1, "a_wins": 1, "b_wins": 0, "ties": 0, "both_bad": 0},
    ]
    # Ids are ordered by their str: "10" < "9".
    assert pair_counts([(9, 10, "a")]) == [
        {"a": 10, "b": 9, "battles": 1, "a_wins": 0, "b_wins": 1, "ties": 0, "both_bad": 0}
    ]
    assert pair_counts([]) == []


def test_rejects_bad_battles():
    with pytest.raises(ValueError, match="outcome"):
        fit_ratings([("a", "b", "draw")])
    with pytest.raises(ValueError, match="itself"):
        fit_ratings([("a", "a", "tie")])


def test_the_fit_agrees_with_choix_where_choix_applies():
    """On a strongly connected set with ties, and no prior, the MLE is choix's (ties fed as a win each way, wins
    twice, which leaves the likelihood's maximum where it is)."""
    import choix

    battles = ([("v1", "v2", "a")] * 6 + [("v1", "v2", "b")] * 3 + [("v2", "v3", "a")] * 5 + [("v2", "v3", "b")] * 2
               + [("v3", "v1", "a")] * 2 + [("v3", "v1", "b")] * 4 + [("v1", "v2", "tie")] * 2)
    index = {"v1": 0, "v2": 1, "v3": 2}
    pairs = []
    for a, b, outcome in battles:
        win, lose = (index[a], index[b]) if outcome == "a" else (index[b], index[a])
        pairs += [(index[a], index[b]), (index[b], index[a])] if outcome == "tie" else [(win, lose)] * 2
    theta = choix.ilsr_pairwise(3, pairs, alpha=0, tol=1e-12)
    expected = BASE + SCALE * (theta - theta.mean()) / np.log(10)
    ours = fit_ratings(battles, prior=0)
    assert [ours[v] for v in index] == pytest.approx(list(expected), abs=0.01)


def test_length_control_matches_a_hand_computed_example():
    # Two groups, two parameters, so the fit is saturated and has a closed form. a's answer is twice as long in 10
    # battles (feature +1/3) and wins 8; half as long in 10 (feature -1/3) and wins 4.
    battles = record("a", "b", wins=8, losses=2) + record("a", "b", wins=4, losses=6)
    lengths = [(20, 10)] * 10 + [(10, 20)] * 10
    ratings, gamma = fit_length_controlled(battles, lengths, prior=0)
    # logit(0.8) = beta + gamma/3 and logit(0.4) = beta - gamma/3.
    beta = (math.log(4) + math.log(2 / 3)) / 2
    assert gamma == pytest.approx((math.log(4) - math.log(2 / 3)) * 3 / 2, abs=1e-8)
    assert diff(ratings, "a", "b") == pytest.approx(SCALE / math.log(10) * beta, abs=1e-6)
    assert diff(ratings, "a", "b") == pytest.approx(200 * math.log10(8 / 3), abs=1e-6)
    assert ratings["a"] + ratings["b"] == pytest.approx(2 * BASE)
    # Without the covariate a won 12 of 20: 400 log10(12/8), more than the controlled gap.
    assert diff(fit_ratings(battles, prior=0), "a", "b") == pytest.approx(400 * math.log10(12 / 8), abs=1e-6)
    assert length_feature(20, 10) == pytest.approx(1 / 3) and length_feature(0, 0) == 0


def length_only_votes(seed: int, n: int = 2000) -> tuple[list[tuple], list[tuple[int, int]]]:
    """Votes of a voter who cannot tell "long" from "short" except by length: P(a wins) = sigmoid(6 x), x the
    length feature. "long" writes the longer answer in 75% of battles."""
    rng = np.random.default_rng(seed)
    battles, lengths = [], []
    for _ in range(n):
        longer, shorter = int(rng.integers(30, 60)), int(rng.integers(10, 30))
        words = {"long": longer, "short": shorter} if rng.random() < 0.75 else {"long": shorter, "short": longer}
        a, b = ("long", "short") if rng.random() < 0.5 else ("short", "long")
        p_a = 1 / (1 + math.exp(-6 * length_feature(words[a], words[b])))
        battles.append((a, b, "a" if rng.random() < p_a else "b"))
        lengths.append((words[a], words[b]))
    return battles, lengths


@pytest.mark.parametrize("seed", range(4))
def test_a_version_that_wins_only_by_length_is_not_ahead_once_controlled(seed):
    battles, lengths = length_only_votes(seed)
    rows = {r["version_id"]: r for r in leaderboard(battles, rounds=100, lengths=lengths)}
    long, short = rows["long"], rows["short"]
    # The plain leaderboard is fooled: "long" is ahead, its interval above the other's.
    assert long["ci_low"] > short["ci_high"]
    # Controlled for length it is not: neither above the other's interval nor more than noise above its rating.
    assert long["ci_low_controlled"] <= short["rating_controlled"]
    assert long["rating_controlled"] - short["rating_controlled"] < (long["rating"] - short["rating"]) / 3
    _, gamma = fit_length_controlled(battles, lengths)
    assert gamma == pytest.approx(6, abs=1)  # the voter's taste for length is recovered
