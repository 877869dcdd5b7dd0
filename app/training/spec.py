"""The settings of one training run: fixed by the web when it enqueues the run, used by the worker as they are.

Stored on the TrainingRun row (its `config` column) as plain JSON. The worker never merges them with its own
defaults, so what a run page shows is exactly what trained and gated that version.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from app.lm.sampling import sampling_settings


def _help(text: str, setting: str | None = None):
    """A field with its help text and the config setting (app/platform/config.py) its value is read from;
    "sampling": the served sampling settings (app.lm.sampling.sampling_settings), which the gate samples with."""
    return field(metadata={"help": text, "setting": setting})


@dataclass(frozen=True)
class GateSpec:
    """Bounds of the gate's generation-health checks."""

    max_fluency_drop: float = _help("largest fall in nats/token of samples scored by the base model, vs the parent",
                                     "GATE_MAX_FLUENCY_DROP")
    min_distinct: float = _help("least expected number of distinct strings among num_candidates raw samples",
                                 "GATE_MIN_DISTINCT")
    max_distinct_drop_se: float | None = _help(
        "largest fall of expected distinct below the parent's, in standard errors of the paired difference "
        "(None: not checked, runs queued before the rule)", "GATE_MAX_DISTINCT_DROP_SE")
    samples: int = _help("raw samples per input behind the distinct estimate, fluency and length (>= num_candidates)",
                          "GATE_SAMPLES")
    max_length_ratio: float = _help("largest factor by which mean sample length may grow or shrink vs the parent",
                                     "GATE_MAX_LENGTH_RATIO")
    eval_prompts: int = _help("inputs sampled for the generation checks", "GATE_EVAL_PROMPTS")
    ancestors: int = _help("earlier versions of the lineage, beyond the parent, the candidate must not rank the "
                           "held-out clicks worse than (0: the parent only)", "GATE_ANCESTORS")


@dataclass(frozen=True)
class TrainingSpec:
    """One run's training, sampling and gate settings."""

    lr: float = _help("learning rate", "TRAIN_LR")
    beta: float = _help("DPO beta: how far from the reference the policy may move", "TRAIN_BETA")
    divergence: str = _help("f-DPO divergence: reverse_kl (plain DPO), js_divergence or alpha_divergence (0.5)",
                             "TRAIN_DIVERGENCE")
    loss: str = _help("preference loss: sigmoid (DPO), ipo (squared, per-token margin to 1/(2 beta)) or kto "
                      "(single labelled answers, all-bad ones included; decoder-only models)", "TRAIN_LOSS")
    epochs: int = _help("passes over the training pairs", "TRAIN_EPOCHS")
    batch_size: int = _help("pairs per step", "TRAIN_BATCH_SIZE")
    max_length: int = _help("tokens of prompt + completion kept when training and when the gate scores pairs",
                             "TRAIN_MAX_LENGTH")
    lora: bool = _help("train a PEFT LoRA adapter and merge it into the saved checkpoint", "TRAIN_LORA")
    start: str = _help("'base': from the starter, with it as reference; 'active': from the parent, plus sft",
                        "TRAIN_START")
    sft_weight: float = _help("weight of the chosen text's NLL beside the DPO loss (0: off)", "TRAIN_SFT_WEIGHT")
    holdout: float = _help("share of inputs held out for the gate", "TRAIN_HOLDOUT")
    max_pairs: int = _help("training pairs per run at most: new clicks first, then a replay sample (0: all)",
                            "TRAIN_MAX_PAIRS")
    seed: int = _help("seed for the split, training and the gate's sampling (0 for every run the web queues)")
    temperature: float = _help("sampling temperature of the gate's generation checks (the serving setting)",
                                "sampling")
    top_p: float = _help("nucleus sampling of the gate's generation checks (the serving setting)", "sampling")
    min_p: float = _help("min-p sampling of the gate's generation checks, 0 off (the serving setting)", "sampling")
    max_new_tokens: int = _help("longest sample of the gate's generation checks (the serving setting)",
                                 "sampling")
    num_candidates: int = _help("samples per input in the gate's diversity check (candidates per comparison)",
                                 "sampling")
    gate: GateSpec = _help("the gate's bounds")
    system_prompt: str = _help("the task's system prompt when the run was queued: a chat model's gate renders with it")

    @classmethod
    def from_config(cls, config, overrides: dict | None = None) -> TrainingSpec:
        """A run's spec from the settings in force (each field names its setting), then the run's overrides."""
        sampling = sampling_settings(config)
        sampling["num_candidates"] = sampling["n"]

        def read(spec_cls) -> dict:
            return {f.name: sampling[f.name] if f.metadata["setting"] == "sampling" else config[f.metadata["setting"]]
                    for f in fields(spec_cls) if f.metadata["setting"]}

        return cls.from_dict({"seed": 0, **read(cls), "gate": read(GateSpec), **(overrides or {})})

    @classmethod
    def from_dict(cls, data: dict) -> TrainingSpec:
        """Rebuild a stored spec; a missing or unknown field is an error, never a silent default."""
        # Runs queued before the task could be edited had no system prompt: none is what they were rendered with.
        # Runs queued before the loss could be chosen trained with DPO's sigmoid loss.
        data = {"system_prompt": "", "loss": "sigmoid", **data}
        names = {f.name for f in fields(cls)}
        missing, unknown = names - set(data), set(data) - names
        if missing or unknown:
            raise ValueError(f"training spec: missing {sorted(missing)}, unknown {sorted(unknown)}")
        # Runs queued before the relative diversity rule, or the test against earlier versions, were gated without.
        return cls(**{**data, "gate": GateSpec(**{"max_distinct_drop_se": None, "ancestors": 0, **data["gate"]})})

    def to_dict(self) -> dict:
        """The spec as JSON for the run row."""
        return asdict(self)
