"""What a run trains on: the bound on training pairs and on held-out pairs (worker/plan.py)."""

from worker.plan import bound_heldout, bound_pairs, click_of


def pairs_of(clicks: range, per_click: int = 2) -> list[dict]:
    """Pairs as build_pairs yields them: each click's pairs together, oldest click first."""
    return [{"preference_id": c, "chosen": f"c{c}", "rejected": f"r{c}-{i}"} for c in clicks for i in range(per_click)]


def test_under_the_bound_every_pair_is_kept_in_order():
    pairs = pairs_of(range(1, 6))
    assert bound_pairs(pairs, max_pairs=100, since={}, seed="s") == pairs
    assert bound_pairs(pairs, max_pairs=0, since={"click": 3}, seed="s") == pairs  # 0: no bound


def test_new_clicks_first_then_a_replay_sample_of_older_ones():
    pairs = pairs_of(range(1, 101))  # 200 pairs; clicks 81..100 are new since the parent's snapshot (80)
    kept = bound_pairs(pairs, max_pairs=60, since={"click": 80}, seed="0:100")
    ids = [p["preference_id"] for p in kept]
    assert len(kept) == 60
    assert set(range(81, 101)) <= set(ids)  # all 20 new clicks (40 pairs)
    old = sorted({i for i in ids if i <= 80})
    assert len(old) == 10 and old != list(range(1, 11))  # 10 older clicks, sampled, not the oldest ones
    assert all(ids.count(i) == 2 for i in set(ids))  # a click's pairs stay together
    assert ids == sorted(ids)
    # The sample is fixed by the seed (a run is reproducible) and moves with it (later runs replay others).
    assert bound_pairs(pairs, max_pairs=60, since={"click": 80}, seed="0:100") == kept
    assert bound_pairs(pairs, max_pairs=60, since={"click": 80}, seed="0:140") != kept


def test_more_new_clicks_than_the_bound_keeps_the_newest():
    kept = bound_pairs(pairs_of(range(1, 101)), max_pairs=20, since={}, seed="s")
    assert sorted({p["preference_id"] for p in kept}) == list(range(91, 101))


def test_clicks_with_fewer_pairs_fill_the_bound_exactly():
    """A click whose candidates were partly identical has one pair: a click that does not fit is passed over."""
    pairs = pairs_of(range(1, 5), per_click=1) + pairs_of(range(5, 8), per_click=2)
    kept = bound_pairs(pairs, max_pairs=5, since={}, seed="s")
    assert [p["preference_id"] for p in kept] == [4, 6, 6, 7, 7]


def test_held_out_bound_is_stable_across_runs():
    """The same held-out clicks stay in as new ones arrive, so runs are gated on mostly the same pairs."""
    first = bound_heldout(pairs_of(range(1, 201)), max_pairs=50)
    later = bound_heldout(pairs_of(range(1, 301)), max_pairs=50)
    assert len(first) == len(later) == 50
    ids_first = {p["preference_id"] for p in first}
    ids_later = {p["preference_id"] for p in later}
    assert len(ids_first & ids_later) >= 10 and max(ids_first) > 25  # spread over the clicks, not the oldest
    assert bound_heldout(pairs_of(range(1, 10)), max_pairs=50) == pairs_of(range(1, 10))


def test_votes_and_clicks_are_bounded_as_separate_answers():
    """Arena votes (one pair each, new by vote time) sit beside clicks: new ones of each kind come first."""
    clicks = pairs_of(range(1, 11))  # two pairs per click
    votes = [{"battle_id": b, "input": f"v{b}", "prompt": "p", "chosen": "c", "rejected": "r",
              "voted_at": f"2026-12-02T10:{b:02d}:00"} for b in range(1, 11)]
    kept = bound_pairs(clicks + votes, max_pairs=10, since={"click": 8, "vote": "2026-12-02T10:07:00"}, seed="s")
    keys = [click_of(p) for p in kept]
    assert len(kept) == 10
    assert {("click", 9), ("click", 10), ("vote", 8), ("vote", 9), ("vote", 10)} <= set(keys)
    assert keys == sorted(keys)  # back in answer order
