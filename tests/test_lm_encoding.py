"""The one encoder: TRL's tokenization for decoder-only models, labels only on the completion, padding masked."""

import pytest


@pytest.fixture(scope="module")
def tokenizers(starter_dir):
    from app.lm.checkpoint import load_tokenizer

    return {arch: load_tokenizer(str(path)) for arch, path in starter_dir.items()}


def test_causal_completion_ends_with_one_end_token(tokenizers):
    from app.lm.encoding import causal_ids

    tok = tokenizers["gpt2"]
    prompt, completion = "Rewrite politely: Send it.\nPolite:", " Please send it."
    p, c = causal_ids(tok, prompt, completion)
    assert p == tok(prompt)["input_ids"]
    assert c == tok(completion)["input_ids"] + [tok.eos_token_id]
    assert causal_ids(tok, prompt, completion + tok.eos_token) == (p, c)  # never a second end token


def test_causal_batch_labels_the_completion_only_and_truncates_the_end(tokenizers):
    from app.lm.encoding import causal_ids, encode_completions

    tok = tokenizers["gpt2"]
    prompts, completions = ["Fix the bug.\nPolite:", "Send the long report today.\nPolite:"], [" Fix it.", " No."]
    batch = encode_completions(tok, prompts, completions, is_seq2seq=False)
    for i, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
        p, c = causal_ids(tok, prompt, completion)
        n = int(batch["attention_mask"][i].sum())
        assert batch["input_ids"][i, :n].tolist() == p + c
        assert batch["labels"][i, :n].tolist() == [-100] * len(p) + c
        assert (batch["labels"][i, n:] == -100).all()
    short = encode_completions(tok, prompts[:1], completions[:1], is_seq2seq=False, max_length=4)
    assert short["input_ids"].shape[1] == 4


def test_seq2seq_labels_end_with_the_end_token_and_mask_padding(tokenizers):
    from app.lm.encoding import encode_completions

    tok = tokenizers["t5"]
    batch = encode_completions(tok, ["Send it.", "Fix the bug now."], [" Please send it soon.", " Fix it."],
                               is_seq2seq=True)
    for i, completion in enumerate([" Please send it soon.", " Fix it."]):
        ids = tok(completion)["input_ids"]
        assert ids[-1] == tok.eos_token_id
        assert batch["labels"][i, : len(ids)].tolist() == ids
        assert (batch["labels"][i, len(ids) :] == -100).all()
