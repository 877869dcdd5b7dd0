"""The gate: its rules on known metrics, and evaluate_version on deliberately broken models."""

import random

import pytest
import torch

from app.lm.scoring import completion_logps
from worker.evaluation import (
    differences_by_input,
    distinct_drop,
    evaluate_version,
    expected_distinct,
    flip_test,
    gate_reasons,
    mean_and_se,
    sign_test,
)

GATE = {"max_fluency_drop": 1.0, "min_distinct": 1.5, "max_length_ratio": 2.5, "eval_prompts": 8, "samples": 10}
HEALTHY = {"fluency_candidate": -2.8, "fluency_parent": -2.7, "distinct_candidate": 2.8, "distinct_parent": 3.0,
           "length_candidate": 12.0, "length_parent": 14.0, "heldout_candidate_only": 3, "heldout_parent_only": 0}


def test_gate_passes_a_better_healthy_candidate():
    m = HEALTHY | {"accuracy_candidate": 0.8, "accuracy_parent": 0.5, "margin_candidate": 1.2, "margin_parent": 0.0}
    assert gate_reasons(m, GATE) == []


def test_gate_rejects_collapse_even_when_held_out_accuracy_is_high():
    """Likelihood displacement: chosen still beats rejected, but the samples are gibberish under the base."""
    m = HEALTHY | {"accuracy_candidate": 0.95, "accuracy_parent": 0.5, "margin_candidate": 30.0, "margin_parent": 0.0,
                   "fluency_candidate": -7.5, "length_candidate": 60.0}
    reasons = gate_reasons(m, GATE)
    assert len(reasons) == 2
    assert "fluency fell by 4.80" in reasons[0] and "grew too long" in reasons[1]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"accuracy_candidate": 0.4, "heldout_candidate_only": 0, "heldout_parent_only": 5}, "accuracy fell"),
        ({"accuracy_candidate": 0.5, "margin_candidate": 0.0, "heldout_pairs": 120}, "no better"),
        ({"accuracy_candidate": 0.5, "accuracy_parent": 0.5, "margin_candidate": 0.0, "margin_parent": 0.0,
          "heldout_candidate_only": 0, "heldout_parent_only": 0}, "unchanged"),
        ({"distinct_candidate": 1.2}, "lost diversity"),
        ({"length_candidate": 5.0}, "shrank too much"),
    ],
)
def test_gate_rules(change, expected):
    m = HEALTHY | {"accuracy_candidate": 0.7, "accuracy_parent": 0.5, "margin_candidate": 1.0, "margin_parent": 0.0,
                   "heldout_candidate_only": 2, "heldout_parent_only": 0}
    reasons = gate_reasons(m | change, GATE)
    assert len(reasons) == 1 and expected in reasons[0]


def test_the_relative_diversity_rule_holds_back_a_drop_beyond_its_standard_error():
    """Issue 27: against the parent, not a fixed line. A drop of 0.2 with a paired SE of 0.05 is held back; the
    same drop with an SE of 0.25 is noise; a version far under 2.5 passes when its parent was as low."""
    gate = GATE | {"min_distinct": 0.0, "max_distinct_drop_se": 1.0}
    m = HEALTHY | {"accuracy_candidate": 0.7, "accuracy_parent": 0.5, "margin_candidate": 1.0, "margin_parent": 0.0,
                   "distinct_candidate": 2.6, "distinct_parent": 2.8, "eval_prompts": 48,
                   "distinct_drop_inputs": 48}
    reasons = gate_reasons(m | {"distinct_drop": 0.2, "distinct_drop_se": 0.05}, gate)
    assert len(reasons) == 1 and "lost diversity against the parent" in reasons[0] and "0.20" in reasons[0]
    assert "paired over 48 inputs" in reasons[0]
    assert gate_reasons(m | {"distinct_drop": 0.2, "distinct_drop_se": 0.25}, gate) == []
    low = m | {"distinct_candidate": 2.1, "distinct_parent": 2.12, "distinct_drop": 0.02, "distinct_drop_se": 0.04}
    assert gate_reasons(low, gate) == []
    assert gate_reasons(m | {"distinct_drop": -0.3, "distinct_drop_se": 0.01}, gate) == []  # more diverse: fine
    # A run queued before the rule (its spec has None) is gated as it was.
    before_the_rule = gate | {"max_distinct_drop_se": None}
    assert gate_reasons(m | {"distinct_drop": 0.2, "distinct_drop_se": 0.05}, before_the_rule) == []


def test_distinct_drop_is_paired_by_input():
    parent = {"a": 3.0, "b": 2.0, "c": 2.5}
    candidate = {"a": 2.8, "b": 1.9, "c": 2.2, "only here": 1.0}
    out = distinct_drop(candidate, parent)
    mean, se = mean_and_se([0.2, 0.1, 0.3])
    assert out["distinct_drop"] == pytest.approx(mean) and out["distinct_drop_se"] == pytest.approx(se)
    assert out["distinct_drop_inputs"] == 3
    assert distinct_drop({"a": 1.0}, {"a": 3.0}) == {"distinct_drop": None, "distinct_drop_se": None,
                                                     "distinct_drop_inputs": 1}


def test_expected_distinct_of_three_from_many_samples():
    assert expected_distinct([str(i) for i in range(12)], 3) == pytest.approx(3.0)  # the plug-in would say 2.76
    assert expected_distinct(["a"] * 12, 3) == pytest.approx(1.0)
    # By hand: a 2 of 4, b and c 1 each. k = 3 draws without replacement from the 4 (the U-statistic): a is missed
    # with C(2,3)/C(4,3) = 0, b and c with C(3,3)/C(4,3) = 1/4 each, so 1 + 3/4 + 3/4.
    assert expected_distinct(["a", "a", "b", "c"], 3) == pytest.approx(2.5)
    # k = 1 is always one string; k = m counts the distinct strings seen.
    assert expected_distinct(["a", "b", "b"], 1) == pytest.approx(1.0)
    assert expected_distinct(["a", "b", "b"], 3) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="at least 3"):
        expected_distinct(["a", "b"], 3)


def test_expected_distinct_is_unbiased_for_a_known_distribution():
    """Probabilities .5/.3/.2: the exact expectation is 3 - 3*sum(p^2) + sum(p^3) = 2.02; the mean estimate agrees."""
    probs = {"a": 0.5, "b": 0.3, "c": 0.2}
    exact = 3 - 3 * sum(p**2 for p in probs.values()) + sum(p**3 for p in probs.values())
    rng = random.Random(0)
    estimates = [expected_distinct(rng.choices(list(probs), list(probs.values()), k=10), 3) for _ in range(4000)]
    mean, se = mean_and_se(estimates)
    assert exact == pytest.approx(2.02)
    assert abs(mean - exact) < 4 * se, (mean, se)


def test_sign_test():
    assert sign_test(0, 0) == 1.0
    assert sign_test(5, 0) == pytest.approx(1 / 32)  # five against, none for: p = 0.5^5
    assert sign_test(2, 0) == pytest.approx(0.25)
    assert sign_test(0, 4) == 1.0


def test_the_worse_test_resamples_inputs_not_pairs():
    """Issue 27: the pairs of one click share its chosen text. Three clicks whose two pairs each went the parent's way
    were "worse" to the sign test over pairs (6 to 0, p = 1/64); by input it is 3 to 0, p = 1/8."""
    assert sign_test(6, 0) == pytest.approx(1 / 64)
    assert flip_test([-2.0, -2.0, -2.0]) == pytest.approx(1 / 8)
    assert flip_test([-1.0, -1.0]) == pytest.approx(0.25)  # a percentile bootstrap over inputs would say 0
    assert flip_test([]) == 1.0 and flip_test([0.0, 0.0]) == 1.0
    assert flip_test([1.0, 2.0, 1.0]) == pytest.approx(1.0)  # every input went the candidate's way
    # Magnitudes count: four inputs two pairs against, one a pair for: 2 of 32 sign patterns are as low.
    assert flip_test([-2.0, -2.0, -2.0, -2.0, 1.0]) == pytest.approx(2 / 32)


def test_the_worse_test_is_exact_on_many_inputs():
    """Forty inputs, 30 against and 10 for: the binomial tail, P(X >= 30) for X ~ Bin(40, 1/2); 20 each way is not
    worse; ties (half a pair) count half; a difference that no pair counts can make is refused."""
    from math import comb

    assert flip_test([-1.0] * 30 + [1.0] * 10) == pytest.approx(sum(comb(40, k) for k in range(30, 41)) / 2**40)
    assert flip_test([-1.0] * 20 + [1.0] * 20) > 0.5
    assert flip_test([-0.5, -0.5]) == pytest.approx(0.25) and flip_test([-0.5, 1.0]) == pytest.approx(0.75)
    with pytest.raises(ValueError):
        flip_test([-0.3])


def test_held_out_pairs_are_summed_by_input_and_the_gate_says_which_test_it_used():
    pairs = [{"input": "a"}, {"input": "a"}, {"input": "b"}, {"input": "c"}]
    rights = [(0.0, 1.0), (0.0, 1.0), (1.0, 1.0), (0.5, 1.0)]
    m = differences_by_input(pairs, rights)
    assert m["heldout_inputs"] == 3 and m["heldout_differences"] == [-2.0, -0.5, 0.0]
    assert m["heldout_p_worse"] == pytest.approx(flip_test([-2.0, -0.5]))
    gated = HEALTHY | {"accuracy_candidate": 0.2, "accuracy_parent": 0.9, "margin_candidate": 1.0,
                       "margin_parent": 1.0, "heldout_candidate_only": 0, "heldout_parent_only": 7,
                       "heldout_inputs": 7, "heldout_p_worse": 0.0078}
    reasons = gate_reasons(gated, GATE)
    assert len(reasons) == 1 and "paired randomization test over 7 inputs, p = 0.008" in reasons[0]
    # 7 pairs against from 3 clicks: by input p = 1/8, not worse.
    assert gate_reasons(gated | {"heldout_inputs": 3, "heldout_p_worse": 0.125}, GATE) == []


def test_a_lower_accuracy_within_noise_passes_when_the_margin_grows():
    """11 vs 13 right of 15 pairs, 3 discordant pairs against and 1 for: not evidence of worse (p = 0.31)."""
    m = HEALTHY | {"accuracy_candidate": 11 / 15, "accuracy_parent": 13 / 15, "margin_candidate": 2.0,
                   "margin_parent": 1.0, "heldout_candidate_only": 1, "heldout_parent_only": 3}
    assert gate_reasons(m, GATE) == []


def test_significantly_worse_is_rejected_even_with_a_larger_margin():
    m = HEALTHY | {"accuracy_candidate": 0.55, "accuracy_parent": 0.85, "margin_candidate": 5.0,
                   "margin_parent": 1.0, "heldout_candidate_only": 1, "heldout_parent_only": 7}
    reasons = gate_reasons(m, GATE)
    assert len(reasons) == 1 and "sign test over pairs, p = 0.035" in reasons[0]


def test_no_better_on_few_pairs_is_not_a_reason():
    """Round 1 of a fidelity run: 0.50 vs the starter's 0.50 and a lower margin on 22 pairs, 11 each way. The loop
    measured this version at 56.2% good against the starter's 38.3%: so few pairs cannot say "no better"."""
    m = HEALTHY | {"accuracy_candidate": 0.5, "accuracy_parent": 0.5, "margin_candidate": -1.2, "margin_parent": 0.0,
                   "heldout_candidate_only": 11, "heldout_parent_only": 11, "heldout_pairs": 22}
    assert gate_reasons(m, GATE) == []
    many = m | {"heldout_candidate_only": 50, "heldout_parent_only": 50, "heldout_pairs": 100}
    assert len(gate_reasons(many, GATE)) == 1 and "no better" in gate_reasons(many, GATE)[0]


def test_equal_accuracy_passes_when_the_margin_grows():
    m = HEALTHY | {"accuracy_candidate": 0.5, "accuracy_parent": 0.5, "margin_candidate": 0.4, "margin_parent": 0.0}
    assert gate_reasons(m, GATE) == []


def heldout(loaded, n: int, seed: int) -> list[dict]:
    """Held-out pairs in the shape build_pairs makes: a polite rewrite chosen over a rude one."""
    from worker.corpus import make_message, make_rewrite

    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        message, slots = make_message(rng)
        chosen, rejected = make_rewrite("polite", slots, rng), make_rewrite("rude", slots, rng)
        pairs.append({"input": message, "prompt": loaded.format_prompt(message), "chosen": " " + chosen,
                      "rejected": " " + rejected})
    return pairs


def test_completion_logps_batch_equals_single_rows(starter_dir):
    from app.lm.checkpoint import load_checkpoint

    for arch in ("gpt2", "t5"):
        loaded = load_checkpoint(str(starter_dir[arch]), device="cpu")
        pairs = heldout(loaded, 3, seed=4)
        prompts, texts = [p["prompt"] for p in pairs], [p["chosen"] for p in pairs]
        sums, counts = completion_logps(loaded, prompts, texts)
        for i in range(3):
            one, n = completion_logps(loaded, prompts[i : i + 1], texts[i : i + 1])
            assert sums[i] == pytest.approx(one[0], abs=1e-3) and counts[i] == n[0]
        assert all(s < 0 for s in sums) and all(c > 3 for c in counts)


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["gpt2", "t5"])
def test_gate_rejects_a_noisy_copy_and_an_unchanged_copy(starter_dir, arch):
    from app.lm.checkpoint import load_checkpoint

    parent = load_checkpoint(str(starter_dir[arch]), device="cpu")
    pairs = heldout(parent, 8, seed=5)
    prompts = [p["input"] for p in heldout(parent, 8, seed=9)]
    run = dict(parent=parent, base=parent, heldout_pairs=pairs, eval_prompts=prompts, gate_cfg=GATE, seed=0,
               max_new_tokens=40)

    same = evaluate_version(candidate=load_checkpoint(str(starter_dir[arch]), device="cpu"), **run)
    assert not same["passed"] and len(same["reasons"]) == 1 and "unchanged" in same["reasons"][0]
    assert same["fluency_candidate"] == pytest.approx(same["fluency_parent"])
    assert same["eval_prompts"] == 8 and same["accuracy_parent"] == 0.5  # the base prefers nothing over itself
    # The test of "worse" by input: an unchanged copy differs on no input.
    assert same["heldout_inputs"] == len({p["input"] for p in pairs}) and same["heldout_p_worse"] == 1.0
    assert set(same["heldout_differences"]) == {0.0}

    noisy = load_checkpoint(str(starter_dir[arch]), device="cpu")
    torch.manual_seed(0)
    with torch.no_grad():
        for p in noisy.model.parameters():
            p.add_(torch.randn_like(p) * p.std() * 2.0)
    broken = evaluate_version(candidate=noisy, **run)
    assert not broken["passed"]
    assert broken["fluency_parent"] - broken["fluency_candidate"] > GATE["max_fluency_drop"]
    assert any("fluency fell" in r for r in broken["reasons"]), broken["reasons"]


@pytest.mark.slow
def test_gate_rejects_a_model_that_repeats_one_word(starter_dir):
    """A collapsed GPT-2 that says "please please ..." whatever it is asked: caught by diversity."""
    from app.lm.checkpoint import load_checkpoint

    parent = load_checkpoint(str(starter_dir["gpt2"]), device="cpu")
    collapsed = load_checkpoint(str(starter_dir["gpt2"]), device="cpu")
    emb = collapsed.model.get_output_embeddings().weight
    please = collapsed.tokenizer(" please", add_special_tokens=False)["input_ids"][0]
    with torch.no_grad():
        # A zeroed final norm makes every hidden state its bias: point it at one token.
        collapsed.model.transformer.ln_f.weight.zero_()
        collapsed.model.transformer.ln_f.bias.copy_(emb[please] * 50 / emb[please].norm())
    m = evaluate_version(candidate=collapsed, parent=parent, base=parent, heldout_pairs=heldout(parent, 6, seed=5),
                         eval_prompts=[], gate_cfg=GATE | {"eval_prompts": 6, "max_distinct_drop_se": 8.0}, seed=0,
                         max_new_tokens=20)
    assert m["distinct_candidate"] == 1.0 and m["distinct_parent"] > 2
    assert not m["passed"] and any("lost diversity" in r for r in m["reasons"])
    # The relative rule at its default (8 standard errors) sees it too, paired over the same inputs; the per-input
    # lists are not stored.
    assert m["distinct_drop"] == pytest.approx(m["distinct_parent"] - 1.0)
    assert any("lost diversity against the parent" in r for r in m["reasons"])
    assert not any(k.startswith("distinct_by_input") for k in m)
    assert all("please" in s for s in m["examples_candidate"][0]["samples"])


def test_why_a_version_passed_is_said_with_the_numbers_behind_it():
    """The audit reason of a promotion: accuracy on how many pairs, the sign test that lets a lower accuracy pass,
    and the generation checks."""
    from worker.evaluation import why_passed

    m = {"accuracy_candidate": 0.56, "accuracy_parent": 0.67, "heldout_pairs": 9, "heldout_parent_only": 3,
         "heldout_candidate_only": 2, "fluency_candidate": -2.1, "fluency_parent": -2.0, "distinct_candidate": 2.8,
         "distinct_of": 3, "length_candidate": 12.0, "length_parent": 11.5}
    text = why_passed(m)
    assert "held-out accuracy 0.56 vs parent 0.67 on 9 pairs" in text
    assert "3 pairs went the parent's way and 2 its own (p = 0.50)" in text and "p < 0.05" in text
    assert "'no better' is judged from 100 pairs on" in text and "2.80 distinct of 3" in text
    assert why_passed({**m, "accuracy_candidate": None}).startswith("no held-out pairs")


def ancestor(version_id: int, p_worse: float, level: float = 0.025, accuracy: float = 0.8) -> dict:
    """One earlier version's test as ancestor_tests records it."""
    return {"version_id": version_id, "accuracy": accuracy, "level": level, "candidate_only": 1, "ancestor_only": 9,
            "inputs": 10, "p_worse": p_worse}


def test_a_drop_against_an_earlier_version_is_a_reason_at_its_share_of_the_level():
    """Two small steps down, each within noise against its parent, add up against the grandparent."""
    from worker.evaluation import why_passed

    m = HEALTHY | {"accuracy_candidate": 0.55, "accuracy_parent": 0.6, "margin_candidate": 1.0, "margin_parent": 1.0,
                   "heldout_candidate_only": 2, "heldout_parent_only": 3, "heldout_pairs": 20}
    assert gate_reasons(m, GATE) == []
    worse = m | {"ancestors": [ancestor(3, 0.01), ancestor(2, 0.5)]}
    reasons = gate_reasons(worse, GATE)
    assert len(reasons) == 1
    assert "below that of version 3, an earlier version of this lineage: 0.55 vs 0.80" in reasons[0]
    assert "p = 0.0100 < 0.0250" in reasons[0] and "shared by the 2 earlier versions" in reasons[0]
    # Below 5% but not below its share of it (Bonferroni over the earlier versions): not a reason.
    assert gate_reasons(m | {"ancestors": [ancestor(3, 0.04), ancestor(2, 0.5)]}, GATE) == []
    assert "no worse than the earlier versions 3 (p = 0.04), 2 (p = 0.50)" in why_passed(
        m | {"ancestors": [ancestor(3, 0.04), ancestor(2, 0.5)], "distinct_of": 3})


def test_earlier_versions_are_scored_on_the_same_held_out_pairs_one_at_a_time(starter_dir):
    from app.lm.checkpoint import load_checkpoint

    parent = load_checkpoint(str(starter_dir["gpt2"]), device="cpu")
    pairs = heldout(parent, 4, seed=5)
    loads = []

    def load():
        loads.append(1)
        return load_checkpoint(str(starter_dir["gpt2"]), device="cpu")

    m = evaluate_version(candidate=load_checkpoint(str(starter_dir["gpt2"]), device="cpu"), parent=parent,
                         base=parent, heldout_pairs=pairs, eval_prompts=[], gate_cfg=GATE | {"eval_prompts": 1,
                         "samples": 3}, seed=0, max_new_tokens=4, ancestors=[(7, load), (5, load)])
    assert len(loads) == 2
    inputs = len({p["input"] for p in pairs})
    # Copies of one model: each earlier version ranks every pair as the candidate does (0.5: as the base does).
    assert m["ancestors"] == [{"version_id": v, "accuracy": 0.5, "level": 0.025, "candidate_only": 0,
                               "ancestor_only": 0, "inputs": inputs, "p_worse": 1.0} for v in (7, 5)]
    no_pairs = evaluate_version(candidate=parent, parent=parent, base=parent, heldout_pairs=[], eval_prompts=["hi"],
                                gate_cfg=GATE | {"eval_prompts": 1, "samples": 3}, seed=0, max_new_tokens=4,
                                ancestors=[(7, load)])
    assert "ancestors" not in no_pairs and len(loads) == 2  # nothing to rank: nothing loaded

    def gone():
        raise OSError("no such folder: models/7")

    m = evaluate_version(candidate=parent, parent=parent, base=parent, heldout_pairs=pairs, eval_prompts=[],
                         gate_cfg=GATE | {"eval_prompts": 1, "samples": 3}, seed=0, max_new_tokens=4,
                         ancestors=[(7, gone), (5, load)])
    assert m["ancestors"][0] == {"version_id": 7, "error": "OSError: no such folder: models/7"}
    assert m["ancestors"][1]["p_worse"] == 1.0 and not any("version 7" in r for r in m["reasons"])
