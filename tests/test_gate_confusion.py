"""bench/gate_confusion.py: versions against their parents, paired by input, and rules replayed on the metrics."""

from bench.gate_confusion import RULES, confusion, replay, versions

HEALTHY = {"fluency_candidate": -2.8, "fluency_parent": -2.7, "length_candidate": 12.0, "length_parent": 14.0,
           "accuracy_candidate": 0.7, "accuracy_parent": 0.5, "margin_candidate": 1.0, "margin_parent": 0.0,
           "heldout_candidate_only": 2, "heldout_parent_only": 0, "heldout_pairs": 20, "eval_prompts": 48}


def measured(good_by_input: list[int]) -> dict:
    return {"good_rate": sum(good_by_input) / (3 * len(good_by_input)), "samples": 3 * len(good_by_input),
            "good_by_input": good_by_input}


def test_versions_pair_by_input_and_replay_the_distinct_rules():
    start = measured([0, 1] * 20)
    better = measured([2, 3] * 20)  # two more good samples of 3 on every input: clearly better
    worse = measured([0, 0] * 20)
    low_but_steady = HEALTHY | {"distinct_candidate": 2.3, "distinct_parent": 2.35, "distinct_drop": 0.05,
                                "distinct_drop_se": 0.06}
    result = {"arch": "gpt2", "judge": "politeness", "tag": "", "seed": 0, "env": {}, "rounds": [
        {"round": 0, **start},
        {"round": 1, "gate": "rejected", "candidate": better, "gate_metrics": low_but_steady, **start},
        {"round": 2, "gate": "promoted", "gate_metrics": HEALTHY | {"distinct_candidate": 2.9, "distinct_parent": 2.9,
                                                                     "distinct_drop": 0.0, "distinct_drop_se": 0.01},
         **worse},
    ]}
    rows = versions(result)
    assert [(r["gate"], r["measured"]) for r in rows] == [("rejected", "better"), ("promoted", "worse")]
    assert abs(rows[0]["delta"] - 2 / 3) < 1e-9 and rows[0]["se"] == 0.0
    before, one_se, after, by_pairs, by_inputs = RULES.values()
    # The fixed line keeps out the better version for its 2.3 distinct; the relative rules let it through.
    assert replay(rows[0], before) == "rejected" and replay(rows[0], after) == replay(rows[0], one_se) == "promoted"
    assert confusion(rows, lambda r: replay(r, after)) == {("promoted", "better"): 1, ("promoted", "worse"): 1}
    assert replay(rows[0] | {"metrics": {"distinct_candidate": 2.0}}, after) is None  # recorded before the rule


def test_the_worse_test_is_replayed_both_ways_on_versions_that_recorded_it():
    """Seven pairs against from three clicks: the sign test over pairs kept the version out, the test by input
    lets it through; a version gated before the per-input differences were recorded is left out of both."""
    rules = list(RULES.values())
    by_pairs, by_inputs = rules[3], rules[4]
    m = HEALTHY | {"distinct_candidate": 2.9, "distinct_parent": 2.9, "distinct_drop": 0.0, "distinct_drop_se": 0.01,
                   "heldout_candidate_only": 0, "heldout_parent_only": 7, "heldout_inputs": 3,
                   "heldout_p_worse": 0.125, "accuracy_candidate": 0.3}
    row = {"metrics": m, "env": {}}
    assert replay(row, by_pairs) == "rejected" and replay(row, by_inputs) == "promoted"
    old = {k: v for k, v in m.items() if k != "heldout_p_worse"}
    old_row = {"metrics": old, "env": {}}
    assert replay(old_row, by_pairs) is None and replay(old_row, by_inputs) is None
