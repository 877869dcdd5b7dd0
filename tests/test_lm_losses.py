"""The DPO and SFT losses against hand-computed numbers."""

import math

import pytest
import torch

from app.lm.losses import dpo_loss, sft_loss


def test_dpo_loss_matches_hand_computed_values():
    policy_chosen, policy_rejected = torch.tensor([-5.0, -3.0]), torch.tensor([-6.0, -2.0])
    ref_chosen, ref_rejected = torch.tensor([-5.5, -3.0]), torch.tensor([-5.5, -2.5])
    out = dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=0.1)
    # pair 1: chosen gained 0.5, rejected lost 0.5 -> z = 0.1 * (0.5 - -0.5) = 0.1
    # pair 2: chosen unchanged, rejected gained 0.5 -> z = 0.1 * (0.0 - 0.5) = -0.05
    z1, z2 = 0.1, -0.05
    expected = (math.log(1 + math.exp(-z1)) + math.log(1 + math.exp(-z2))) / 2
    assert out["loss"].item() == pytest.approx(expected, abs=1e-6)
    assert out["chosen_rewards"].tolist() == pytest.approx([0.05, 0.0], abs=1e-6)
    assert out["rejected_rewards"].tolist() == pytest.approx([-0.05, 0.05], abs=1e-6)
    assert out["accuracy"] == 0.5
    assert out["margin"] == pytest.approx((z1 + z2) / 2, abs=1e-6)


@pytest.mark.parametrize(("divergence", "f"), [
    ("js_divergence", lambda u: math.log(2) + math.log(1 / (1 + math.exp(-u)))),  # log(2t / (t + 1)), t = e^u
    ("alpha_divergence", lambda u: (math.exp(-0.5 * u) - 1) / -0.5),  # (t^(a-1) - 1) / (a - 1), a = 0.5
])
def test_f_dpo_divergences_match_their_formulas(divergence, f):
    policy_chosen, policy_rejected = torch.tensor([-5.0, -3.0]), torch.tensor([-6.0, -2.0])
    ref_chosen, ref_rejected = torch.tensor([-5.5, -3.0]), torch.tensor([-5.5, -2.5])
    out = dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=0.1, divergence=divergence)
    z1 = 0.1 * (f(0.5) - f(-0.5))
    z2 = 0.1 * (f(0.0) - f(0.5))
    expected = (math.log(1 + math.exp(-z1)) + math.log(1 + math.exp(-z2))) / 2
    assert out["loss"].item() == pytest.approx(expected, abs=1e-6)
    assert out["chosen_rewards"].tolist() == pytest.approx([0.1 * f(0.5), 0.1 * f(0.0)], abs=1e-6)
    with pytest.raises(ValueError, match="unknown divergence"):
        dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=0.1, divergence="forward")


def test_ipo_loss_matches_hand_computed_values():
    """TRL's IPO: the per-token margin regressed to 1/(2 beta); DPO's implicit rewards reported as before."""
    policy_chosen, policy_rejected = torch.tensor([-5.0, -3.0]), torch.tensor([-6.0, -2.0])
    ref_chosen, ref_rejected = torch.tensor([-5.5, -3.0]), torch.tensor([-5.5, -2.5])
    tokens = (torch.tensor([5, 2]), torch.tensor([4, 1]))
    out = dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=0.5, loss="ipo", tokens=tokens)
    # pair 1: 0.5 / 5 - (-0.5) / 4 = 0.225; pair 2: 0 / 2 - 0.5 / 1 = -0.5; target 1 / (2 * 0.5) = 1
    expected = ((0.225 - 1) ** 2 + (-0.5 - 1) ** 2) / 2
    assert out["loss"].item() == pytest.approx(expected, abs=1e-6)
    assert out["chosen_rewards"].tolist() == pytest.approx([0.25, 0.0], abs=1e-6)
    with pytest.raises(ValueError, match="unknown loss"):
        dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta=0.5, loss="hinge", tokens=tokens)


def test_dpo_loss_is_log_two_when_policy_equals_reference():
    same = torch.tensor([-4.0, -7.0, -1.0])
    out = dpo_loss(same, same - 2, same, same - 2, beta=0.5)
    assert out["loss"].item() == pytest.approx(math.log(2), abs=1e-6)
    assert out["accuracy"] == 0.0  # a zero margin is not a win


def test_sft_loss_is_per_token_negative_log_likelihood():
    # -4 over 2 tokens and -9 over 3 tokens: 2 and 3 nats per token, mean 2.5.
    assert sft_loss(torch.tensor([-4.0, -9.0]), torch.tensor([2, 3])).item() == pytest.approx(2.5)
