"""The sigmoid DPO loss (or IPO's) and the SFT term, on summed completion log-probs (the encoder-decoder training path).

Per pair, with summed completion log-probs under the policy (p) and the reference (r):
    -log sigmoid(beta * (f(p_chosen - r_chosen) - f(p_rejected - r_rejected)))
where f is the identity for plain DPO (reverse KL) and f-DPO's f'(ratio) for the other divergences, as TRL 1.16
computes them for decoder-only models (`f_divergence_type`): the same loss on both training paths. Plus, optionally,
a weight times the chosen completion's negative log-likelihood per token (TRL's "sft" loss term), which keeps
the chosen text likely and counters likelihood displacement.
"""

from __future__ import annotations

ALPHA = 0.5  # TRL's default f_alpha_divergence_coef


def divergence_scores(logratios, divergence: str):
    """f'(ratio) of the f-divergence, from log ratios: TRL's formulas (DPOTrainer, f_divergence_type)."""
    import math

    import torch
    import torch.nn.functional as F

    if divergence == "reverse_kl":
        return logratios
    if divergence == "js_divergence":
        return math.log(2) + F.logsigmoid(logratios)
    if divergence == "alpha_divergence":
        return (torch.exp(torch.clamp((ALPHA - 1.0) * logratios, max=80.0)) - 1.0) / (ALPHA - 1.0)
    raise ValueError(f"unknown divergence {divergence!r}: use reverse_kl, js_divergence or alpha_divergence")


def dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta: float,
             divergence: str = "reverse_kl", loss: str = "sigmoid", tokens: tuple | None = None) -> dict:
    """The preference loss (mean over pairs) with the implicit rewards, their accuracy and mean margin.

    loss "sigmoid" is DPO's; "ipo" is TRL's IPO: (per-token margin - 1/(2 beta))^2, the scores divided by each
    completion's token count (`tokens`: chosen counts, rejected counts)."""
    import torch.nn.functional as F

    chosen_scores = divergence_scores(policy_chosen - ref_chosen, divergence)
    rejected_scores = divergence_scores(policy_rejected - ref_rejected, divergence)
    chosen_rewards, rejected_rewards = beta * chosen_scores, beta * rejected_scores
    margins = chosen_rewards - rejected_rewards
    if loss == "sigmoid":
        value = -F.logsigmoid(margins).mean()
    elif loss == "ipo":
        n_chosen, n_rejected = tokens
        delta = chosen_scores / n_chosen.clamp(min=1) - rejected_scores / n_rejected.clamp(min=1)
        value = ((delta - 1 / (2 * beta)) ** 2).mean()
    else:
        raise ValueError(f"unknown loss {loss!r}: use sigmoid or ipo")
    return {
        "loss": value,
        "chosen_rewards": chosen_rewards.detach(),
        "rejected_rewards": rejected_rewards.detach(),
        "accuracy": (margins > 0).float().mean().item(),
        "margin": margins.mean().item(),
    }


def sft_loss(chosen_logps, chosen_tokens):
    """Negative log-likelihood of the chosen completions, normalised per token, averaged over pairs."""
    return -(chosen_logps / chosen_tokens.clamp(min=1)).mean()
