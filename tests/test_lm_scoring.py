"""The one scorer: known log-probs, padding, and the gate and the trainer scoring the same tokens."""

import math

import pytest
import torch

from app.lm.checkpoint import LoadedModel
from app.lm.scoring import sequence_logps
from worker.seq2seq_dpo import pair_logps


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
    logps, counts = sequence_logps(model, batch, is_seq2seq=True)
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
        chosen, rejected, (n_chosen, n_rejected) = pair_logps(LoadedModel(model, tok, True), pairs, max_length=64)
        for i, pair in enumerate(pairs):
            c, r, (n, m) = pair_logps(LoadedModel(model, tok, True), [pair], max_length=64)
            assert chosen[i].item() == pytest.approx(c.item(), abs=1e-4)
            assert rejected[i].item() == pytest.approx(r.item(), abs=1e-4)
            assert n_chosen[i].item() == n.item() == len(tok(pair["chosen"])["input_ids"])  # with </s>
            assert n_rejected[i].item() == m.item() == len(tok(pair["rejected"])["input_ids"])
    assert (chosen < 0).all() and (rejected < 0).all()


PAIR = {"prompt": "Rewrite politely: Send the report now.\nPolite:", "chosen": " Could you please send the report?",
        "rejected": " Send it."}


def test_the_gate_scores_the_tokens_trl_trains_a_causal_model_on(starter_dir, tmp_path):
    """TRL's own tokenization and collation of one pair equal the core encoder's, and so do the log-probs."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from app.lm.checkpoint import load_checkpoint
    from app.lm.device import training_precision
    from app.lm.encoding import encode_completions
    from app.lm.scoring import completion_logps

    loaded = load_checkpoint(str(starter_dir["gpt2"]), device="cpu")
    args = DPOConfig(output_dir=str(tmp_path), max_length=128, report_to="none", save_strategy="no",
                     gradient_checkpointing=False, **training_precision())
    trainer = DPOTrainer(model=loaded.model, ref_model=None, args=args, processing_class=loaded.tokenizer,
                         train_dataset=Dataset.from_list([PAIR]))
    row = trainer.train_dataset[0]
    ours = encode_completions(loaded.tokenizer, [PAIR["prompt"]] * 2, [PAIR["chosen"], PAIR["rejected"]],
                              is_seq2seq=False, max_length=128)
    for i, key in enumerate(("chosen_ids", "rejected_ids")):
        n = int(ours["attention_mask"][i].sum())
        assert ours["input_ids"][i, :n].tolist() == row["prompt_ids"] + row[key]
        assert (ours["labels"][i, :n] != -100).sum().item() == len(row[key])

    # TRL's collated batch, scored by hand the way its loss does: the same sums as the gate's scorer.
    batch = trainer.data_collator([row])
    with torch.no_grad():
        logps = loaded.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        logps = logps[:, :-1].float().log_softmax(-1).gather(2, batch["input_ids"][:, 1:, None]).squeeze(-1)
        trl_sums = (logps * batch["completion_mask"][:, 1:]).sum(-1).tolist()  # [chosen, rejected]
    gate_sums, _ = completion_logps(loaded, [PAIR["prompt"]] * 2, [PAIR["chosen"], PAIR["rejected"]], max_length=128)
    assert gate_sums == pytest.approx(trl_sums, abs=1e-4)


def test_the_gate_and_the_seq2seq_trainer_score_a_pair_alike(starter_dir):
    """The T5 training loop's pair scores and the gate's are one computation."""
    from app.lm.checkpoint import load_checkpoint
    from worker import evaluation

    loaded = load_checkpoint(str(starter_dir["t5"]), device="cpu")
    pair = {**PAIR, "prompt": PAIR["prompt"].split("\n")[0]}
    with torch.no_grad():
        chosen, rejected, _ = pair_logps(loaded, [pair], max_length=128)
    gate_chosen, gate_rejected = evaluation.pair_logps(loaded, [pair], max_length=128)
    assert [chosen.item(), rejected.item()] == pytest.approx(gate_chosen + gate_rejected, abs=1e-5)


def test_a_chat_model_samples_trains_and_is_gated_on_the_same_tokens(chat_dir, tmp_path):
    """A chat-templated checkpoint: the rendered prompt (system prompt, user message, generation cue) is what the
    sampler encodes, what TRL's DPOTrainer batches and what the gate scores, token for token; the completion closes
    with the end-of-turn token, which also ends a sample."""
    from datasets import Dataset
    from trl import DPOConfig, DPOTrainer

    from app.dataset.clicks import Click
    from app.dataset.pairs import build_pairs
    from app.lm.checkpoint import load_checkpoint
    from app.lm.device import training_precision
    from app.lm.encoding import encode_completions
    from app.lm.sampling import _encode, end_token_ids
    from app.lm.scoring import completion_logps

    loaded = load_checkpoint(str(chat_dir), device="cpu")
    tok = loaded.tokenizer
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert loaded.prompt_format == "chat" and im_end in end_token_ids(loaded)
    prompt = loaded.format_prompt("Send the report now.", system_prompt="Be polite.")
    assert prompt == ("<|im_start|>system\nBe polite.<|im_end|>\n<|im_start|>user\nSend the report now.<|im_end|>\n"
                      "<|im_start|>assistant\n")
    # The pair as build_pairs makes it from a click on this prompt: no space after the cue's newline.
    click = Click(1, 1, prompt, "Send the report now.", 2, 11, ((11, "Could you send the report?"), (12, "Send it.")))
    [pair] = list(build_pairs([click]))
    assert pair["chosen"] == "Could you send the report?" and pair["rejected"] == "Send it."

    sampled = _encode(loaded, [prompt], max_new_tokens=8, max_input_tokens=256)["input_ids"][0].tolist()
    args = DPOConfig(output_dir=str(tmp_path), max_length=128, report_to="none", save_strategy="no",
                     gradient_checkpointing=False, **training_precision())
    trainer = DPOTrainer(model=loaded.model, ref_model=None, args=args, processing_class=tok,
                         train_dataset=Dataset.from_list([{k: pair[k] for k in ("prompt", "chosen", "rejected")}]))
    row = trainer.train_dataset[0]
    assert row["prompt_ids"] == sampled
    assert row["chosen_ids"][-1] == row["rejected_ids"][-1] == im_end  # the turn is closed
    ours = encode_completions(tok, [prompt] * 2, [pair["chosen"], pair["rejected"]], is_seq2seq=False,
                              max_length=128)
    for i, key in enumerate(("chosen_ids", "rejected_ids")):
        n = int(ours["attention_mask"][i].sum())
        assert ours["input_ids"][i, :n].tolist() == row["prompt_ids"] + row[key]

    batch = trainer.data_collator([row])
    with torch.no_grad():
        logps = loaded.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        logps = logps[:, :-1].float().log_softmax(-1).gather(2, batch["input_ids"][:, 1:, None]).squeeze(-1)
        trl_sums = (logps * batch["completion_mask"][:, 1:]).sum(-1).tolist()
    gate_sums, _ = completion_logps(loaded, [prompt] * 2, [pair["chosen"], pair["rejected"]], max_length=128)
    assert gate_sums == pytest.approx(trl_sums, abs=1e-4)


@pytest.mark.parametrize("tokenizer_adds_bos", [True, False])
def test_a_template_that_writes_its_own_begin_token_is_not_given_two(chat_dir, tokenizer_adds_bos):
    """Llama-style templates start with the begin-of-text token, and such tokenizers add one too: the encoded prompt
    starts with exactly one, whether or not the tokenizer adds it."""
    from transformers import AutoTokenizer

    from app.lm.checkpoint import render_chat

    tok = AutoTokenizer.from_pretrained(chat_dir)
    tok.add_special_tokens({"bos_token": "<|begin|>"})
    tok.add_bos_token = tokenizer_adds_bos
    tok.chat_template = "{{ bos_token }}" + tok.chat_template
    ids = tok(render_chat(tok, "Fix it.", system_prompt="Be kind."))["input_ids"]
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1


def test_a_template_that_refuses_a_system_message_gets_it_in_the_users_turn(chat_dir):
    """Gemma-style: a system message raises in the template; the system prompt then leads the user's message."""
    from transformers import AutoTokenizer

    from app.lm.checkpoint import end_of_turn, render_chat

    tok = AutoTokenizer.from_pretrained(chat_dir)
    tok.chat_template = ("{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('System role not "
                         "supported') }}{% endif %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                         "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
    assert render_chat(tok, "Fix it.", system_prompt="Be kind.") == (
        "<|im_start|>user\nBe kind.\n\nFix it.<|im_end|>\n<|im_start|>assistant\n")
    assert render_chat(tok, "Fix it.") == "<|im_start|>user\nFix it.<|im_end|>\n<|im_start|>assistant\n"
    tok.chat_template = "{% for m in messages %}{% if m['role'] == 'user' %}{{ m['content'] }}{% endif %}{% endfor %}"
    assert end_of_turn(tok) is None  # the assistant's text never shows: no end token to learn from it
