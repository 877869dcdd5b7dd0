"""bench/unreached.py: which measured messages a loop never got a good sample for, and whether the message as
written would be good."""

from __future__ import annotations

from bench.judges import JUDGES
from bench.unreached import as_written, report


def test_a_message_as_written_is_a_sentence_without_its_emoji():
    assert as_written("the build is red again 😤 who pushed without tests") == \
        "The build is red again who pushed without tests."
    assert as_written("can you call me back?") == "Can you call me back?"


def test_brevity_asks_some_messages_to_be_shorter_than_written():
    long_one = "the quote for the roof repair is way too high"
    assert not JUDGES["brevity"].good(long_one, as_written(long_one))
    assert JUDGES["brevity"].good(long_one, "Roof repair quote too high.")
    assert JUDGES["fidelity"].good(long_one, as_written(long_one))


def run(judge: str, seed: int, first: list[int], last: list[int]) -> dict:
    """A loop result as bench/loop.py writes it, cut down to what the report reads."""
    samples = 3 * len(first)  # three a message, as the loop measures
    return {"judge": judge, "seed": seed, "rounds": [{"good_by_input": first, "samples": samples},
                                                     {"good_by_input": last, "samples": samples}]}


def test_the_report_lists_messages_never_good_and_splits_the_rate_by_the_message_as_written():
    measured = ["the quote for the roof repair is way too high", "call me back", "send the deck to Ana"]
    results = {"a": run("brevity", 0, [0, 1, 2], [0, 3, 2]), "b": run("brevity", 1, [0, 2, 0], [0, 3, 3])}
    rows, rates = report(results, measured=measured)
    assert rows == [[measured[0], "0/6", "0.750", "no"]]
    assert rates == {"as written is good (messages: 2)": 11 / 12, "as written is not good (messages: 1)": 0.0}
