"""bench/gate_probes.py: the standard error over the gate's own inputs, backed out of the recorded figures."""

import random

import pytest

from bench.gate_probes import without
from worker.evaluation import mean_and_se


def test_taking_differences_out_of_recorded_figures_equals_computing_without_them():
    rng = random.Random(3)
    own = [rng.uniform(-0.5, 1.0) for _ in range(48)]
    probes = [rng.choice([-2.0, -1.0, 0.0, 1.0, 2.0]) for _ in range(20)]
    mean, se = mean_and_se(own + probes)
    got = without(mean=mean, se=se, n=len(own) + len(probes), removed=probes)
    assert got == pytest.approx((*mean_and_se(own), len(own)))


def test_too_few_left_is_an_error():
    with pytest.raises(ValueError, match="1 differences left"):
        without(mean=0.5, se=0.1, n=3, removed=[0.0, 1.0])
