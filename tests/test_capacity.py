"""bench/capacity.py: the capacity curve's points from bench/load.py's reports, the throughput factor, the plot."""

from __future__ import annotations

from bench.capacity import plot, rows, throughput_factors


def run(annotators: int, backend: str = "sqlite", **extra) -> dict:
    """One run as bench/load.py reports it (the fields the curve reads)."""
    return {"backend": backend, "annotators": annotators, "clicks": 10 * annotators, "clicks_per_s": annotators / 4,
            "errors": 0, "click_to_next_ms": {"p50": annotators, "p95": 3 * annotators}, "answer_ms": {"p95": 2.0},
            "from_buffer": 3, "handed_out": 4, **extra}


def test_points_are_ordered_with_the_buffer_share_and_the_plot_is_written(tmp_path):
    report = {"args": {"model": "starter", "new_tokens": "80"},
              "runs": [run(20, busy_503s=7), run(5), run(10, backend="postgres")]}
    points = rows(report)
    assert [(p["backend"], p["annotators"]) for p in points] == [("postgres", 10), ("sqlite", 5), ("sqlite", 20)]
    assert points[2]["p95"] == 60 and points[2]["buffer"] == 0.75 and points[2]["busy"] == 7 and points[1]["busy"] == 0
    assert {p["model"] for p in points} == {"starter at 80 tokens"}
    out = tmp_path / "capacity.png"
    shape = rows({"args": {"model": "gpt2-small", "new_tokens": "32"}, "runs": [run(5, backend="sqlite@web")]})
    plot(points + shape, out, "test")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_throughput_factor_is_each_settings_best_against_the_same_databases_web_setting():
    report = {"args": {"model": "gpt2-small", "new_tokens": "32"},
              "runs": [run(5, backend="sqlite@web", clicks_per_s=1.0), run(20, backend="sqlite@web", clicks_per_s=1.5),
                       run(5, backend="sqlite@prefetcher", clicks_per_s=2.0),
                       run(20, backend="sqlite@prefetcher", clicks_per_s=4.5),
                       run(20, backend="postgres@prefetcher", clicks_per_s=3.0)]}
    factors = {f["backend"]: f for f in throughput_factors(rows(report))}
    assert factors["sqlite@prefetcher"]["best_clicks_per_s"] == 4.5 and factors["sqlite@prefetcher"]["vs_web"] == 3.0
    assert factors["sqlite@web"]["vs_web"] == 1.0
    assert factors["postgres@prefetcher"]["vs_web"] is None  # no postgres@web run to compare with


def test_a_run_in_which_nobody_got_a_second_comparison_is_a_gap_in_the_plot(tmp_path):
    """bench/load.py records None percentiles for such a run (and the app's log tail); the curve still draws."""
    empty = run(2, backend="sqlite@prefetcher", clicks=0, clicks_per_s=0.0,
                click_to_next_ms={"p50": None, "p95": None}, answer_ms={"p95": None})
    points = rows({"args": {"model": "gpt2-small", "new_tokens": "32"}, "runs": [empty, run(5, "sqlite@prefetcher")]})
    assert points[0]["p95"] is None and points[0]["clicks_per_s"] == 0.0
    plot(points, tmp_path / "gap.png", "test")
    assert (tmp_path / "gap.png").read_bytes()[:4] == b"\x89PNG"
