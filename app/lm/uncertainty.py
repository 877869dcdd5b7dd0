"""Which candidates to show: the ones the served model is least sure how to rank (active learning).

A click teaches most where the model cannot yet tell the candidates apart (APL, Muldrew et al. 2024; ADPO, Ji et
al. 2024). The served version's implicit DPO reward of a candidate is its log-prob under that version minus its
log-prob under the reference it was trained against (the lineage's starter); of k sampled candidates, the two whose
rewards lie closest together are the pair it is least sure how to order, shown with the first other sample. Before
any training the served version is its own reference, every reward is 0, and the first n distinct samples (a random
subset: samples are independent) are shown, as without this.
"""

from __future__ import annotations

from app.lm.checkpoint import LoadedModel
from app.lm.encoding import completion_text
from app.lm.scoring import completion_logps


def tightest(rewards: list[float], n: int) -> list[int]:
    """Indices of the n rewards with the smallest range (max - min): sorted, then the narrowest window."""
    order = sorted(range(len(rewards)), key=lambda i: rewards[i])
    start = min(range(len(order) - n + 1), key=lambda s: rewards[order[s + n - 1]] - rewards[order[s]])
    return sorted(order[start : start + n])


def closest_pair_and_one(rewards: list[float], n: int) -> list[int]:
    """Indices to show: the two rewards closest together, then the first n - 2 others in sample order.

    The n closest alone were most often n bad samples while the starter is good on a quarter of inputs, so the answer
    was "all bad" and made no pair (16-22 of 67 answers against 4-9, and the loop learnt less than with random
    samples, docs/BENCHMARKS.md); the one left to chance keeps an ordinary sample beside the pair in question.
    """
    pair = tightest(rewards, min(2, n))
    rest = [i for i in range(len(rewards)) if i not in pair][: n - len(pair)]
    return sorted(pair + rest)


def least_sure(served: LoadedModel, reference: LoadedModel | None, *, model_prompt: str, reference_prompt: str,
               texts: list[str], n: int) -> list[str]:
    """n of the distinct texts: the pair the served model is least sure how to order and the first others; with
    fewer than n distinct texts, or no reference, the first n texts as they are."""
    distinct = list(dict.fromkeys(texts))
    if reference is None or len(distinct) <= n:
        return texts[:n]
    policy, _ = completion_logps(served, [model_prompt] * len(distinct),
                                 [completion_text(model_prompt, t) for t in distinct])
    ref, _ = completion_logps(reference, [reference_prompt] * len(distinct),
                              [completion_text(reference_prompt, t) for t in distinct])
    rewards = [p - r for p, r in zip(policy, ref, strict=True)]
    return [distinct[i] for i in closest_pair_and_one(rewards, n)]
