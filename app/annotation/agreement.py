"""Inter-annotator agreement: Krippendorff's alpha (nominal) and pairwise agreement over labelled items."""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence

import krippendorff
import numpy as np

from app.platform.extensions import db
from app.tables import Candidate, Comparison, Preference, User


def krippendorff_alpha(units: Mapping[Hashable, Sequence[Hashable]]) -> float | None:
    """Krippendorff's alpha for nominal data (the `krippendorff` package): units (item -> the labels its coders
    gave) with >= 2 labels count.

    None when no unit has two labels, or when every pairable label is the same value: expected disagreement
    is then 0 and alpha is 0/0, undefined rather than perfect (the package raises there).
    """
    # A lone value has no one to pair with, so it carries no reliability information.
    pairable = [Counter(labels) for labels in units.values() if len(labels) >= 2]
    values = sorted({v for counts in pairable for v in counts}, key=repr)
    if len(values) < 2:
        return None
    # Units x values counts: the package's input when coders are not identified (answers are per item, not per
    # a fixed set of coders).
    value_counts = np.array([[counts[v] for v in values] for counts in pairable], dtype=float)
    return float(krippendorff.alpha(value_counts=value_counts, level_of_measurement="nominal"))


def pairwise_agreement(units: Mapping[Hashable, Sequence[Hashable]]) -> tuple[int, int]:
    """(agreeing pairs, pairs) over every unordered pair of labels within each unit."""
    agreeing = pairs = 0
    for labels in units.values():
        m = len(labels)
        pairs += m * (m - 1) // 2
        agreeing += sum(v * (v - 1) // 2 for v in Counter(labels).values())
    return agreeing, pairs


def agreement_report(answers: Iterable[tuple[Hashable, Hashable, Hashable]]) -> dict:
    """Agreement over (item, annotator, label) answers: overall and per annotator, with the counts behind them."""
    by_item: dict[Hashable, dict[Hashable, Hashable]] = {}
    seen: dict[Hashable, None] = {}  # every annotator, so one with no overlap still shows up (with pairwise None)
    for item, annotator, label in answers:
        # a later answer by the same annotator overwrites the earlier one: they changed their mind, and counting
        # both would pair them with themselves
        by_item.setdefault(item, {})[annotator] = label
        seen[annotator] = None
    overlapped = {item: labels for item, labels in by_item.items() if len(labels) >= 2}
    units = {item: list(labels.values()) for item, labels in overlapped.items()}
    agreeing, pairs = pairwise_agreement(units)

    per: dict[Hashable, dict] = {
        a: {"annotator": a, "items": 0, "pairs": 0, "agreeing_pairs": 0, "pairwise": None} for a in seen
    }
    for labels in overlapped.values():
        for annotator, label in labels.items():
            row = per[annotator]
            row["items"] += 1
            row["pairs"] += len(labels) - 1
            row["agreeing_pairs"] += sum(1 for other, lab in labels.items() if other != annotator and lab == label)
    for row in per.values():
        if row["pairs"]:
            row["pairwise"] = row["agreeing_pairs"] / row["pairs"]

    return {
        "alpha": krippendorff_alpha(units),
        "pairwise": agreeing / pairs if pairs else None,
        "agreeing_pairs": agreeing,
        "pairs": pairs,
        "items": len(overlapped),
        "answers": sum(len(labels) for labels in overlapped.values()),
        "annotators": sorted(per.values(), key=lambda row: str(row["annotator"])),
    }


def annotation_agreement() -> dict:
    """agreement_report over the stored answers: an item is a pool comparison with its overlap copies.

    A label is the chosen candidate's sample index (the same across copies, whatever the display order) or the
    verdict (tie, all_bad); skips say nothing about the candidates, and gold items are scored by gold.py."""
    from sqlalchemy import func, or_, select


    chosen = Candidate.__table__.alias("chosen")
    rows = db.session.execute(
        select(func.coalesce(Comparison.root_id, Comparison.id), User.name, Preference.verdict, chosen.c.sample_index)
        .join(Comparison, Comparison.id == Preference.comparison_id)
        .join(User, User.id == Preference.user_id)
        .outerjoin(chosen, chosen.c.id == Preference.chosen_candidate_id)
        # Only comparisons with copies can have two answers: the filter keeps this off the bulk of the clicks.
        .where(Preference.verdict != "skip", or_(Comparison.root_id.is_not(None), Comparison.copies > 0))
        .order_by(Preference.id)
    )
    return agreement_report((item, name, f"sample {index}" if verdict == "choice" else verdict)
                            for item, name, verdict, index in rows)
