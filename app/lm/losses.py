"""The sigmoid DPO loss and the SFT term, on summed completion log-probs (the encoder-decoder training path).

Per pair, with summed completion log-probs under the policy (p) and the reference (r):
    -log sigmoid(beta * ((p_chosen - r_chosen) - (p_rejected - r_rejected)))
plus, optionally, a weight times the chosen completion's negative log-likelihood per token (TRL's "sft" loss term),
which keeps the chosen text likely and counters likelihood displacement.
"""

from __future__ import annotations


def dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float) -> dict:
    """The sigmoid DPO loss (mean over pairs) with the implicit rewards, their accuracy and mean margin."""
    import torch.nn.functional as F

    chosen_rewards = beta * (policy_chosen - ref_chosen)
    rejected_rewards = beta * (policy_rejected - ref_rejected)
    margins = chosen_rewards - rejected_rewards
    return {
        "loss": -F.logsigmoid(margins).mean(),
        "chosen_rewards": chosen_rewards.detach(),
        "rejected_rewards": rejected_rewards.detach(),
        "accuracy": (margins > 0).float().mean().item(),
        "margin": margins.mean().item(),
    }


def sft_loss(chosen_logps, chosen_tokens):
    """Negative log-likelihood of the chosen completions, normalised per token, averaged over pairs."""
    return -(chosen_logps / chosen_tokens.clamp(min=1)).mean()
