"""bench/gpu.py, the GPU check, run on CPU with the tiny starters: every figure it reports is there and sane, and
what the budget leaves out is named."""

from __future__ import annotations

import pytest

from bench.gpu import measure, table

pytestmark = pytest.mark.slow  # it trains the tiny starters four times


def test_the_gpu_check_reports_every_figure_on_cpu(starter_dir):
    models = {"tiny-gpt2": (starter_dir["gpt2"], "gpt2"), "tiny-t5": (starter_dir["t5"], "t5")}
    report = measure(models, new_tokens=8, reps=2, train_pairs=8, budget_s=600)
    assert report["device"] == "cpu" and report["skipped"] == []
    assert report["two_process_training"] == "not run: 0 GPU(s) here"
    for name in models:
        r = report["shapes"][name]
        assert set(r["sampling"]) == {"fp32", "bf16"}  # a CPU runs bf16
        for timing in r["sampling"].values():
            for label in ("inline", "batch"):
                low, high = timing[label]["range_ms"]
                assert 0 < low <= timing[label]["median_ms"] <= high
        assert set(r["training_s_per_1000_pairs"]) == {"full", "lora"}
        assert all(v > 0 for v in r["training_s_per_1000_pairs"].values())
        assert r["hot_swap_load_s"] > 0
    assert len(table(report).splitlines()) == 2 + 2 * 2  # header, rule, and a row per shape and dtype


def test_the_budget_skips_and_names_what_did_not_fit(starter_dir):
    report = measure({"tiny-gpt2": (starter_dir["gpt2"], "gpt2")}, new_tokens=8, reps=1, train_pairs=8, budget_s=0)
    assert report["skipped"] == ["tiny-gpt2 sampling fp32", "tiny-gpt2 sampling bf16", "tiny-gpt2 training full",
                                 "tiny-gpt2 training lora", "tiny-gpt2 load"]
    assert report["shapes"]["tiny-gpt2"]["sampling"] == {}


def test_the_two_process_step_it_runs_with_two_gpus_runs_on_cpu(starter_dir):
    """What the check runs where it sees two GPUs (TRAIN_PROCESSES=2 through worker/distributed.py), on two CPU
    processes here: it trains and times."""
    from bench.gpu import training_s_per_1000

    assert training_s_per_1000(starter_dir["gpt2"], arch="gpt2", n_pairs=8, lora=False, processes=2) > 0
