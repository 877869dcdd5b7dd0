"""Config: every setting comes from env in one place, with typed parsing and sound defaults."""

import pytest

from app.platform.config import Config


def test_defaults(monkeypatch):
    for name in ("DATABASE_URL", "REDIS_URL", "MODEL_STORE", "NUM_CANDIDATES", "TORCH_THREADS", "PORT"):
        monkeypatch.delenv(name, raising=False)
    cfg = Config()
    assert cfg.SQLALCHEMY_DATABASE_URI.startswith("sqlite:///") and cfg.SQLALCHEMY_DATABASE_URI.endswith(
        "instance/prefloop.db")
    assert cfg.MODEL_STORE.endswith("models")
    assert cfg.NUM_CANDIDATES == 3
    assert cfg.REDIS_URL is None
    assert cfg.TORCH_THREADS == 1
    assert cfg.PORT == 5000


def test_env_overrides(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://u@h/db")
    monkeypatch.setenv("GEN_TEMPERATURE", "0.7")
    monkeypatch.setenv("GEN_TOP_P", "0.9")
    monkeypatch.setenv("GEN_MAX_NEW_TOKENS", "20")
    monkeypatch.setenv("MAX_INPUT_CHARS", "500")
    monkeypatch.setenv("TRAIN_LORA", "yes")
    monkeypatch.setenv("PORT", "8080")
    cfg = Config()
    assert cfg.SQLALCHEMY_DATABASE_URI == "postgresql+psycopg://u@h/db"
    assert (cfg.TEMPERATURE, cfg.TOP_P, cfg.MAX_NEW_TOKENS, cfg.MAX_INPUT_CHARS) == (0.7, 0.9, 20, 500)
    assert cfg.TRAIN_LORA is True and cfg.PORT == 8080


def test_garbage_is_refused_not_guessed(monkeypatch):
    monkeypatch.setenv("TORCH_THREADS", "many")
    with pytest.raises(ValueError, match="TORCH_THREADS"):
        Config()


def test_gate_samples_must_cover_the_candidates(monkeypatch):
    monkeypatch.setenv("GATE_SAMPLES", "2")
    with pytest.raises(ValueError, match="GATE_SAMPLES must be at least NUM_CANDIDATES"):
        Config()
    monkeypatch.setenv("TRAIN_DIVERGENCE", "forward")
    monkeypatch.setenv("GATE_SAMPLES", "12")
    with pytest.raises(ValueError, match="TRAIN_DIVERGENCE must be one of reverse_kl"):
        Config()


def test_empty_value_means_default(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "  ")
    assert Config().REDIS_URL is None


def test_create_app_overlays_a_test_config(app):
    assert app.config["TESTING"] is True
    assert app.config["PREFETCH_SIZE"] == 0


def test_every_setting_is_in_the_readme_settings_table():
    """A setting read from the environment and missing from the README's table is one nobody can find."""
    import re

    from harness.live import ROOT

    source = (ROOT / "app" / "platform" / "config.py").read_text()
    names = set(re.findall(r'env_\w+\(\s*"([A-Z][A-Z0-9_]+)"', source))
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Settings"):readme.index("\n## ", readme.index("## Settings") + 1)]
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", table))
    assert len(names) > 40 and names - documented == set()
