"""bench/headroom.py: the accepted strings the starter offers a message, and the distinct they allow."""

from __future__ import annotations

import pytest

from bench.headroom import ceiling, expected_distinct, headroom


def test_expected_distinct_matches_the_formula_at_its_known_points():
    assert expected_distinct([1.0]) == pytest.approx(1.0)
    assert expected_distinct([0.5, 0.5]) == pytest.approx(1.75)
    assert expected_distinct([0.2] * 5) == pytest.approx(2.44)  # K = 5 evenly: just under the 2.5 line
    assert expected_distinct([1 / 6] * 6) == pytest.approx(2.528, abs=1e-3)
    assert expected_distinct([1e-6] * 10**6) == pytest.approx(3.0, abs=1e-5)  # never repeats


def test_the_ceiling_puts_the_good_share_on_the_accepted_strings_and_the_rest_on_strings_that_never_repeat():
    assert ceiling(5, good_share=1.0) == pytest.approx(2.44)
    assert ceiling(5, good_share=0.9) == pytest.approx(3 - 3 * 0.81 / 5 + 0.729 / 25)
    assert ceiling(0, good_share=0.9) == 3.0


def test_headroom_counts_distinct_accepted_strings_per_message():
    message = "the printer is jammed again"
    polite = ["Could you please fix the printer? It is jammed again. Thank you!",
              "Would you mind fixing the jammed printer, please? Thank you!"]
    samples = {message: [polite[0], polite[0], polite[1], "printer jammed", "printer jammed again"],
               "answer my email already": ["answer my email already"] * 5}
    out = headroom(samples, "politeness")
    assert out["accepted_strings"] == [2, 0]
    assert out["good_rate"] == pytest.approx(3 / 10)
    assert out["share_none"] == 0.5
    assert out["ceiling_all_good"] == pytest.approx(1.75)  # the message with none is left out
    assert out["ceiling_at_90"] == pytest.approx((ceiling(2, good_share=0.9) + 3.0) / 2)
    assert out["starter_distinct"] == pytest.approx(
        (expected_distinct([0.4, 0.2, 0.2, 0.2]) + 1.0) / 2)
