"""The plain-torch DPO for T5: the loss against hand-computed numbers, log-probs, and a short real training."""

import copy
import math
import random

import pytest
import torch

from worker.seq2seq_dpo import dpo_loss, pair_logps, sequence_logps, sft_loss, train_seq2seq_dpo


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


def test_dpo_loss_is_log_two_when_policy_equals_reference():
    same = torch.tensor([-4.0, -7.0, -1.0])
    out = dpo_loss(same, same - 2, same, same - 2, beta=0.5)
    assert out["loss"].item() == pytest.approx(math.log(2), abs=1e-6)
    assert out["accuracy"] == 0.0  # a zero margin is not a win


def test_sft_loss_is_per_token_negative_log_likelihood():
    # -4 over 2 tokens and -9 over 3 tokens: 2 and 3 nats per token, mean 2.5.
    assert sft_loss(torch.tensor([-4.0, -9.0]), torch.tensor([2, 3])).item() == pytest.approx(2.5)


class FixedLogits(torch.nn.Module):
    """A stand-in seq2seq LM whose next-token distribution is the same known one at every position."""

    def __init__(self, logits: list[float]):
        super().__init__()
        self.row = torch.tensor(logits)

    def forward(self, input_ids, attention_mask, labels):
        out = torch.nn.Module()
        out.logits = self.row.expand(labels.shape[0], labels.shape[1], -1)
        return out


def test_sequence_logps_sums_completion_tokens_and_skips_padding():
    model = FixedLogits([0.0, math.log(2.0), math.log(3.0)])  # probabilities 1/6, 2/6, 3/6
    batch = {
        "input_ids": torch.zeros(2, 3, dtype=torch.long),
        "attention_mask": torch.ones(2, 3, dtype=torch.long),
        "labels": torch.tensor([[1, 2, 2], [0, -100, -100]]),
    }
    logps, counts = sequence_logps(model, batch)
    assert logps.tolist() == pytest.approx([math.log(2 / 6) + 2 * math.log(3 / 6), math.log(1 / 6)], abs=1e-5)
    assert counts.tolist() == [3, 1]


def test_sequence_logps_of_a_padded_batch_equals_each_row_alone(starter_dir):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    path = starter_dir["t5"]
    model = AutoModelForSeq2SeqLM.from_pretrained(path).eval()
    tok = AutoTokenizer.from_pretrained(path)
    pairs = [
        {"prompt": "Rewrite politely: Send the report now.", "chosen": " Could you please send the report?",
         "rejected": " Send it."},
        {"prompt": "Rewrite politely: Fix this bug.", "chosen": " Fix it.", "rejected": " Fix this bug now, idiot."},
    ]
    with torch.no_grad():
        chosen, rejected, n_chosen = pair_logps(model, tok, pairs, max_length=64)
        for i, pair in enumerate(pairs):
            c, r, n = pair_logps(model, tok, [pair], max_length=64)
            assert chosen[i].item() == pytest.approx(c.item(), abs=1e-4)
            assert rejected[i].item() == pytest.approx(r.item(), abs=1e-4)
            assert n_chosen[i].item() == n.item() == len(tok(pair["chosen"])["input_ids"])  # with </s>
    assert (chosen < 0).all() and (rejected < 0).all()


def corpus_pairs(n: int, seed: int) -> list[dict]:
    """Polite rewrites preferred over rude ones for blunt messages from the starter's own task."""
    from worker.corpus import make_message, make_rewrite

    rng = random.Random(seed)
    pairs = []
    for _ in range(n):
        message, slots = make_message(rng)
        pairs.append({"prompt": f"Rewrite politely: {message}", "chosen": " " + make_rewrite("polite", slots, rng),
                      "rejected": " " + make_rewrite("rude", slots, rng)})
    return pairs


def preference(model, ref, tok, pairs) -> tuple[float, float, float]:
    """(DPO loss, reward accuracy, mean chosen log-prob) of model against ref on pairs."""
    with torch.no_grad():
        pc, pr, _ = pair_logps(model, tok, pairs, max_length=64)
        rc, rr, _ = pair_logps(ref, tok, pairs, max_length=64)
    out = dpo_loss(pc, pr, rc, rr, beta=0.1)
    return out["loss"].item(), out["accuracy"], pc.mean().item()


@pytest.mark.slow
def test_short_training_changes_parameters_and_learns_the_preference(starter_dir):
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    path = starter_dir["t5"]
    tok = AutoTokenizer.from_pretrained(path)
    ref = AutoModelForSeq2SeqLM.from_pretrained(path).eval()
    model = AutoModelForSeq2SeqLM.from_pretrained(path)
    before = copy.deepcopy(model.state_dict())
    train, heldout = corpus_pairs(32, seed=1), corpus_pairs(16, seed=2)
    loss0, acc0, _ = preference(model, ref, tok, heldout)
    assert loss0 == pytest.approx(math.log(2), abs=1e-4) and acc0 == 0.0

    logs = []
    summary = train_seq2seq_dpo(model=model, ref_model=ref, tokenizer=tok, pairs=train, beta=0.1, lr=1e-3, epochs=3,
                                batch_size=8, max_length=64, seed=0, on_log=lambda *a: logs.append(a))

    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert len(changed) > len(before) // 2, "most weights must move"
    assert all(torch.equal(v, before[k]) for k, v in ref.state_dict().items()), "the reference must stay frozen"
    assert [a[0] for a in logs] == list(range(1, 13)) and {a[1] for a in logs} == {12}
    assert logs[-1][2] == pytest.approx(3.0)
    assert summary["loss_last"] < summary["loss_first"]
    loss1, acc1, _ = preference(model, ref, tok, heldout)
    assert loss1 < loss0 - 0.05
    assert acc1 >= 0.75, f"held-out reward accuracy {acc1}"


@pytest.mark.slow
def test_sft_term_keeps_the_chosen_text_likely(starter_dir):
    """Plain DPO pushes the chosen log-prob down (likelihood displacement); the sft term holds it up."""
    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    path = starter_dir["t5"]
    tok = AutoTokenizer.from_pretrained(path)
    ref = AutoModelForSeq2SeqLM.from_pretrained(path).eval()
    pairs = corpus_pairs(24, seed=3)
    chosen_after = {}
    for sft_weight in (0.0, 1.0):
        model = AutoModelForSeq2SeqLM.from_pretrained(path)
        train_seq2seq_dpo(model=model, ref_model=ref, tokenizer=tok, pairs=pairs, beta=0.1, lr=3e-3, epochs=4,
                          batch_size=8, max_length=64, sft_weight=sft_weight, seed=0)
        _, acc, chosen_after[sft_weight] = preference(model, ref, tok, pairs)
        assert acc >= 0.75
    assert chosen_after[1.0] > chosen_after[0.0] + 1.0, chosen_after
