"""Training plumbing: one LoRA setting for every architecture."""

import types


def test_lora_lets_peft_choose_targets_it_knows_and_adapts_every_linear_layer_otherwise():
    from worker.training import lora_config

    def model(kind):
        return types.SimpleNamespace(config=types.SimpleNamespace(model_type=kind))

    assert lora_config(model("gpt2"), task_type="CAUSAL_LM").target_modules is None
    assert lora_config(model("t5"), task_type="SEQ_2_SEQ_LM").target_modules is None
    assert lora_config(model("a-new-architecture"), task_type="CAUSAL_LM").target_modules == "all-linear"
