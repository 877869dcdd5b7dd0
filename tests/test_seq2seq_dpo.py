"""The plain-torch DPO loop for T5: a short real training changes the weights and learns the preference."""

import copy
import math
import random

import pytest
import torch

from app.lm.checkpoint import LoadedModel
from app.lm.losses import dpo_loss
from worker.seq2seq_dpo import pair_logps, train_seq2seq_dpo


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
        pc, pr, _ = pair_logps(LoadedModel(model, tok, True), pairs, max_length=64)
        rc, rr, _ = pair_logps(LoadedModel(ref, tok, True), pairs, max_length=64)
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
