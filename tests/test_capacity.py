"""bench/capacity.py: the capacity curve's points from bench/load.py's report, and its plot."""

from __future__ import annotations

from bench.capacity import plot, rows


def run(annotators: int, backend: str = "sqlite", **extra) -> dict:
    """One run as bench/load.py reports it (the fields the curve reads)."""
    return {"backend": backend, "annotators": annotators, "clicks": 10 * annotators, "errors": 0,
            "click_to_next_ms": {"p50": annotators, "p95": 3 * annotators}, "answer_ms": {"p95": 2.0},
            "from_buffer": 3, "handed_out": 4, **extra}


def test_points_are_ordered_with_the_buffer_share_and_the_plot_is_written(tmp_path):
    report = {"runs": [run(20, busy_503s=7), run(5), run(10, backend="postgres")]}
    points = rows(report)
    assert [(p["backend"], p["annotators"]) for p in points] == [("postgres", 10), ("sqlite", 5), ("sqlite", 20)]
    assert points[2]["p95"] == 60 and points[2]["buffer"] == 0.75 and points[2]["busy"] == 7 and points[1]["busy"] == 0
    out = tmp_path / "capacity.png"
    plot(points, out, "test")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
