"""The starter: the committed default matches its recipe, and is published instead of trained when it does."""

import json

import pytest

import worker.starter as starter
from app.versions.files import file_digests
from worker.starter import StarterConfig, build_starter, prebuilt, write_prebuilt


@pytest.mark.parametrize("arch, kind", [("gpt2", "causal"), ("t5", "seq2seq")])
def test_the_committed_starters_match_the_current_recipe(arch, kind):
    """Change the corpus or the config, and this fails until the starter is rebuilt (README, "The starter model")."""
    folder = prebuilt(StarterConfig(arch=arch))
    assert folder is not None, f"models/prebuilt/{arch} is missing, stale or corrupt: " \
        f"python -m worker starter-model --arch {arch} --rebuild --write-prebuilt"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["kind"] == "starter" and manifest["arch"] == kind and manifest["params"] > 1e6


@pytest.fixture
def prebuilt_dir(tmp_path, monkeypatch, starter_dir):
    """PREBUILT pointed at a temp folder holding the tiny GPT-2 starter."""
    monkeypatch.setattr(starter, "PREBUILT", tmp_path / "prebuilt")
    write_prebuilt(starter_dir["gpt2"], "gpt2")
    return tmp_path / "prebuilt" / "gpt2"


def test_a_matching_prebuilt_starter_is_published_without_training(tmp_path, monkeypatch, prebuilt_dir):
    monkeypatch.setattr(starter, "train_starter", lambda *a, **k: pytest.fail("must not train"))
    number, path = build_starter(StarterConfig.tiny("gpt2"), store=tmp_path / "store", log=lambda *_: None)
    manifest = json.loads((path / "manifest.json").read_text())
    assert number == 1 and manifest["prebuilt"] is True and manifest["kind"] == "starter"
    assert file_digests(path) == file_digests(prebuilt_dir) == manifest["files"]


def test_a_corrupt_or_different_prebuilt_starter_is_trained_instead(tmp_path, monkeypatch, prebuilt_dir):
    trained = []
    monkeypatch.setattr(starter, "train_starter", lambda cfg, out, **k: trained.append(cfg) or {})
    (prebuilt_dir / "model.safetensors").write_bytes(b"not the weights")
    build_starter(StarterConfig.tiny("gpt2"), store=tmp_path / "a", log=lambda *_: None)
    assert len(trained) == 1
    assert prebuilt(StarterConfig.tiny("gpt2", seed=1)) is None  # another seed is another recipe
    assert prebuilt(StarterConfig.tiny("t5")) is None
