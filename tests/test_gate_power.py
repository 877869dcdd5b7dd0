"""bench/gate_power.py: the simulation of the gate's test of "worse", counting pairs or inputs."""

from bench.gate_power import simulate


def test_counting_pairs_cries_wolf_where_counting_inputs_does_not():
    """Equal models whose disagreements come two pairs a click: the sign test over pairs says "worse" well above its
    5% level, the test by input at or below it; and both catch a clear drop on many clicks."""
    equal = simulate(clicks=30, pairs=2, disagree=0.3, drop=0.0, trials=600, seed=1)
    assert equal["worse_by_pairs"] > 0.07 and equal["worse_by_inputs"] <= 0.05
    drop = simulate(clicks=90, pairs=2, disagree=0.3, drop=0.4, trials=200, seed=2)
    assert drop["worse_by_pairs"] > 0.95 and drop["worse_by_inputs"] > 0.95
    one_pair = simulate(clicks=30, pairs=1, disagree=0.3, drop=0.0, trials=600, seed=3)
    assert one_pair["worse_by_pairs"] <= 0.06  # with one pair a click the two tests are the same test


def test_two_small_steps_down_are_caught_more_often_with_the_grandparent_at_a_bounded_cost():
    """The test against the grandparent adds power against a two-step drift, and for equal models its false alarms
    stay under the two tests' summed levels (5% each at most)."""
    from bench.gate_power import two_steps

    drift = two_steps(clicks=90, step=0.1, trials=300, seed=4)
    assert drift["held_back_with_ancestors"] > drift["held_back_parent_only"] + 0.3
    equal = two_steps(clicks=40, step=0.0, trials=600, seed=5)
    assert equal["held_back_parent_only"] <= equal["held_back_with_ancestors"] <= 0.10
