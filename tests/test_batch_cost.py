"""bench/batch_cost.py: the ceiling batching can reach when each request waits at most MAX_WAIT_SECONDS."""

from bench.batch_cost import bound


def test_the_ceiling_is_the_cheapest_batch_that_ends_within_the_wait():
    """At 3 s a comparison alone on each of 2 cores (0.67 a second), batches of 8 at 1 s (8 s) fit a 10 s wait and
    16 at 0.9 s (14.4 s) do not: the ceiling is 1 a second, 1.5x; a 15 s wait lets the 16 in."""
    costs = {1: 3.0, 8: 1.0, 16: 0.9}
    assert bound(costs, inline=2 / 3.0, max_wait=10) == {"batch": 8, "per_s": 1.0, "ratio": 1.5}
    assert bound(costs, inline=2 / 3.0, max_wait=15)["batch"] == 16
    assert bound(costs, inline=2 / 3.0, max_wait=2) == {"batch": None, "per_s": 0.0, "ratio": 0.0}
