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
