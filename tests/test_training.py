"""Training plumbing: one LoRA setting for every architecture."""

import types


def test_lora_lets_peft_choose_targets_it_knows_and_adapts_every_linear_layer_otherwise():
    from worker.training import lora_config

    def model(kind):
        return types.SimpleNamespace(config=types.SimpleNamespace(model_type=kind))

    assert lora_config(model("gpt2"), task_type="CAUSAL_LM").target_modules is None
    assert lora_config(model("t5"), task_type="SEQ_2_SEQ_LM").target_modules is None
    assert lora_config(model("a-new-architecture"), task_type="CAUSAL_LM").target_modules == "all-linear"


def test_both_training_paths_take_the_f_dpo_divergence(app, starter_dir):
    """TRAIN_DIVERGENCE reaches TRL's DPOConfig (GPT-2) and our loss (T5); both train and learn the preference."""
    from dataclasses import replace

    from app.training.jobs import training_config
    from app.training.spec import TrainingSpec

    with app.app_context():
        spec = replace(TrainingSpec.from_dict(training_config()), divergence="js_divergence", epochs=3, lr=5e-4)
    train_both_and_learn(starter_dir, spec, loss_type=["sigmoid"])


def test_train_loss_ipo_reaches_the_plan_and_both_training_paths(app, starter_dir):
    """TRAIN_LOSS=ipo: the plan swaps DPO's sigmoid for it (the sft anchor stays), TRL (GPT-2) and our loop (T5)
    train with it and the loss falls."""
    from dataclasses import replace

    from app.training.jobs import training_config
    from app.training.spec import TrainingSpec
    from worker.plan import training_plan

    with app.app_context():
        app.config["TRAIN_LOSS"] = "ipo"
        spec = replace(TrainingSpec.from_dict(training_config()), epochs=3, lr=5e-4)
    assert spec.loss == "ipo"
    parent, base = types.SimpleNamespace(id=2), types.SimpleNamespace(id=1)
    assert training_plan(spec, parent=parent, base=base)[1:] == (["ipo", "sft"], [1.0, spec.sft_weight])
    assert training_plan(replace(spec, start="active"), parent=parent, base=base)[0] is parent
    old = {k: v for k, v in spec.to_dict().items() if k != "loss"}
    assert TrainingSpec.from_dict(old).loss == "sigmoid"  # a run stored before the setting trained with DPO's loss
    train_both_and_learn(starter_dir, spec, loss_type=["ipo"])


def train_both_and_learn(starter_dir, spec, *, loss_type: list[str]) -> None:
    """Train both starters a few steps on the corpus's pairs (each in its own prompt format); the loss must fall."""
    from tests.test_seq2seq_dpo import corpus_pairs
    from worker.training import train_causal, train_seq2seq

    pairs = corpus_pairs(16, seed=0)
    for arch, train in (("gpt2", train_causal), ("t5", train_seq2seq)):
        prompt = "Rewrite politely: {input}\nPolite:" if arch == "gpt2" else "Rewrite politely: {input}"
        rows = [p | {"prompt": prompt.replace("{input}", p["prompt"].removeprefix("Rewrite politely: "))}
                for p in pairs]
        _, _, summary = train(init_path=str(starter_dir[arch]), pairs=rows, spec=spec, loss_type=loss_type,
                              loss_weights=[1.0])
        assert summary["steps"] >= 2 and summary["loss_last"] < summary["loss_first"], (arch, summary)


def test_kto_is_refused_where_it_cannot_train(app, starter_dir, monkeypatch):
    """TRAIN_LOSS=kto: only from the starter (no sft term to hold an active start), only on decoder-only models, and
    only with two answers a step and both labels; each a clear error, before anything trains."""
    from dataclasses import replace

    import pytest

    from app.platform.config import Config
    from app.training.jobs import training_config
    from app.training.spec import TrainingSpec
    from worker.plan import training_plan
    from worker.training import kto_trainer, train_seq2seq

    monkeypatch.setenv("TRAIN_LOSS", "kto")
    monkeypatch.setenv("TRAIN_START", "active")
    with pytest.raises(ValueError, match="TRAIN_START=base"):
        Config()
    with app.app_context():
        spec = replace(TrainingSpec.from_dict(training_config()), loss="kto")
    parent, base = types.SimpleNamespace(id=2), types.SimpleNamespace(id=1)
    assert training_plan(spec, parent=parent, base=base) == (base, ["kto"], [1.0])  # no sft term beside it
    with pytest.raises(ValueError, match="TRAIN_START=base"):
        training_plan(replace(spec, start="active"), parent=parent, base=base)
    rows = [{"prompt": "p", "completion": " c", "label": True}]
    with pytest.raises(ValueError, match="decoder-only"):
        train_seq2seq(init_path=str(starter_dir["t5"]), pairs=rows, spec=spec, loss_type=["kto"], loss_weights=[1.0])
    with pytest.raises(ValueError, match="at least 2 answers"):
        kto_trainer(model=None, ref_model=None, tokenizer=None, peft_config=None, rows=rows,
                    args={"per_device_train_batch_size": 1}, seed=0)
    with pytest.raises(ValueError, match="good and bad answers"):
        kto_trainer(model=None, ref_model=None, tokenizer=None, peft_config=None, rows=rows * 4,
                    args={"per_device_train_batch_size": 4}, seed=0)


def test_kto_trains_with_and_without_lora_and_raises_the_good_answers(app, starter_dir):
    """TRAIN_LOSS=kto on the GPT-2 starter, plain and with a LoRA adapter (merged after): the good answers end up
    likelier against the bad ones than under the starter."""
    from dataclasses import replace

    from app.lm.checkpoint import load_checkpoint
    from app.lm.scoring import completion_logps
    from app.training.jobs import training_config
    from app.training.spec import TrainingSpec
    from tests.test_seq2seq_dpo import corpus_pairs
    from worker.training import train_causal

    prompt = "Rewrite politely: {input}\nPolite:"
    rows = []
    for p in corpus_pairs(12, seed=0):
        text = prompt.replace("{input}", p["prompt"].removeprefix("Rewrite politely: "))
        rows += [{"prompt": text, "completion": p["chosen"], "label": True},
                 {"prompt": text, "completion": p["rejected"], "label": False}]
    starter = load_checkpoint(str(starter_dir["gpt2"]), device="cpu")

    def gap(model) -> float:
        logps = completion_logps(replace(starter, model=model), [r["prompt"] for r in rows],
                                 [r["completion"] for r in rows])[0]
        return sum(lp if r["label"] else -lp for lp, r in zip(logps, rows, strict=True))

    before = gap(starter.model)
    with app.app_context():
        spec = replace(TrainingSpec.from_dict(training_config()), loss="kto", epochs=3, lr=5e-4, batch_size=4)
    for lora in (False, True):
        model, _, summary = train_causal(init_path=str(starter_dir["gpt2"]), pairs=rows,
                                         spec=replace(spec, lora=lora), loss_type=["kto"], loss_weights=[1.0])
        assert summary["steps"] >= 6 and not hasattr(model, "peft_config"), summary  # LoRA merged away
        assert gap(model) > before, lora
