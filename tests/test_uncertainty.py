"""Active learning: of k samples, the comparison shows the n the served version is least sure how to rank."""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

from app.lm.uncertainty import closest_pair_and_one, least_sure, tightest
from tests.conftest import install_child


def test_tightest_is_the_narrowest_window_of_rewards():
    assert tightest([5.0, 0.1, 3.0, 0.2, 0.15, -4.0], 3) == [1, 3, 4]
    assert tightest([1.0, 1.0, 1.0, 1.0], 3) == [0, 1, 2]  # all alike: the first n, as sampled
    assert tightest([0.0, 10.0, 20.0], 3) == [0, 1, 2]


def test_the_closest_pair_is_shown_with_the_first_other_sample():
    """Of six rewards the two closest (0.1 and 0.12) and the first other in sample order (index 0); n = 4 adds the next
    other, n = 2 is the pair alone."""
    rewards = [5.0, 0.1, 3.0, 0.3, 0.12, -4.0]
    assert closest_pair_and_one(rewards, 3) == [0, 1, 4]
    assert closest_pair_and_one(rewards, 4) == [0, 1, 2, 4]
    assert closest_pair_and_one(rewards, 2) == [1, 4]
    assert closest_pair_and_one([0.0, 0.0, 0.0], 3) == [0, 1, 2]  # all alike (before training): as sampled


def perturbed_child(starter: Path, tmp_path: Path) -> Path:
    """A copy of the starter whose weights moved a little: a version with rewards that differ by candidate."""
    import torch
    from transformers import AutoModelForCausalLM

    from app.lm.checkpoint import load_tokenizer

    model = AutoModelForCausalLM.from_pretrained(starter)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    out = tmp_path / "child"
    model.save_pretrained(out)
    load_tokenizer(starter).save_pretrained(out)
    manifest = json.loads((starter / "manifest.json").read_text())
    manifest.pop("files", None)  # the starter's digests: these weights are new
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def test_least_sure_without_a_reference_shows_the_first_samples(starter_dir):
    from app.lm.checkpoint import load_checkpoint

    loaded = load_checkpoint(str(starter_dir["gpt2"]), device="cpu")
    texts = ["a.", "b.", "c.", "d."]
    assert least_sure(loaded, None, model_prompt="x", reference_prompt="x", texts=texts, n=3) == texts[:3]
    # Fewer distinct texts than shown: nothing to choose between.
    assert least_sure(loaded, loaded, model_prompt="x", reference_prompt="x", texts=["a.", "a.", "b.", "a."],
                      n=3) == ["a.", "a.", "b."]


def test_active_comparisons_show_the_candidates_with_the_closest_rewards(app, client, admin, annotator, starter_dir,
                                                                        tmp_path):
    """ACTIVE_CANDIDATES=6 with a trained version served: the comparison shows the two of the six samples (reproduced
    from its seed) whose rewards under the served version against the starter lie closest, and the first other."""
    from app.annotation.comparisons import create_comparison
    from app.lm.checkpoint import load_checkpoint
    from app.lm.encoding import completion_text
    from app.lm.sampling import sample_batch
    from app.lm.scoring import completion_logps
    from app.versions.serving import get_holder

    install_child(app, perturbed_child(starter_dir["gpt2"], tmp_path), number=2, parent=1)
    app.config["ACTIVE_CANDIDATES"] = 6
    client.post("/api/prompts", json={"prompts": ["tell Sam the van is parked outside"]}, headers=admin["headers"])
    with app.app_context():
        comparison = create_comparison(user_id=annotator["id"])
        assert comparison.model_version_id == 2 and comparison.settings["active_candidates"] == 6
        shown = {c.text for c in comparison.candidates}
        served = get_holder(app).current()
        settings = {k: comparison.settings[k] for k in ("temperature", "top_p", "min_p", "max_new_tokens")}
        (texts, _), = sample_batch(served, model_prompts=[comparison.model_prompt], n=6, seed=comparison.seed,
                                   **settings)
    distinct = list(dict.fromkeys(texts))
    assert len(shown) == 3 and shown <= set(distinct) and len(distinct) > 3
    reference = load_checkpoint(str(starter_dir["gpt2"]), device="cpu")
    prompt = comparison.model_prompt
    policy, _ = completion_logps(served, [prompt] * len(distinct), [completion_text(prompt, t) for t in distinct])
    ref, _ = completion_logps(reference, [prompt] * len(distinct), [completion_text(prompt, t) for t in distinct])
    rewards = [p - r for p, r in zip(policy, ref, strict=True)]
    ranked = sorted(rewards)
    narrowest = min(b - a for a, b in zip(ranked, ranked[1:], strict=False))
    picked = sorted(distinct.index(t) for t in shown)

    def pair_and_first_other(i: int, j: int) -> bool:
        # The app scored in its own batch: a pair within scoring noise of the narrowest counts.
        first_other = min(k for k in range(len(distinct)) if k not in (i, j))
        return abs(abs(rewards[i] - rewards[j]) - narrowest) < 1e-4 and set(picked) - {i, j} == {first_other}

    assert any(pair_and_first_other(i, j) for i, j in combinations(picked, 2)), (rewards, shown)
