"""The team at a glance: per annotator, how much, how fast, how they answer, and how well (gold, agreement)."""

from __future__ import annotations

import csv
import io
from datetime import datetime, time
from statistics import median

from sqlalchemy import func, select

from app.annotation.agreement import annotation_agreement
from app.annotation.gold import gold_accuracy
from app.platform.extensions import db
from app.tables import Flag, Preference, User, utcnow

COLUMNS = ("name", "answers", "answers_today", "median_seconds", "skip_rate", "all_bad_rate", "gold_accuracy",
           "agreement", "flags")


def annotator_stats(*, agreement: dict | None = None, gold: dict | None = None) -> list[dict]:
    """One row per person who answered or flagged, by name: counts, today's answers (UTC), median seconds per
    answer, skip and all-bad rates, gold accuracy and agreement with the others (None where there is none).

    agreement, gold: annotation_agreement() and gold_accuracy() where the caller has them already (the admin page)."""
    today = datetime.combine(utcnow().date(), time())
    rows: dict[int, dict] = {}
    latencies: dict[int, list[int]] = {}
    names = dict(db.session.execute(select(User.id, User.name)).all())
    for user_id, verdict, latency, created in db.session.execute(
        select(Preference.user_id, Preference.verdict, Preference.latency_ms, Preference.created_at)
    ):
        row = rows.setdefault(user_id, blank(names[user_id]))
        row["answers"] += 1
        row["answers_today"] += created >= today
        row["skip_rate"] += verdict == "skip"
        row["all_bad_rate"] += verdict == "all_bad"
        if latency is not None:
            latencies.setdefault(user_id, []).append(latency)
    for user_id, count in db.session.execute(select(Flag.user_id, func.count(Flag.id)).group_by(Flag.user_id)):
        rows.setdefault(user_id, blank(names[user_id]))["flags"] = count
    gold = {r["annotator"]: r["accuracy"] for r in (gold or gold_accuracy())["annotators"]}
    agree = {r["annotator"]: r["pairwise"] for r in (agreement or annotation_agreement())["annotators"]}
    for user_id, row in rows.items():
        n = row["answers"]
        row["skip_rate"] = row["skip_rate"] / n if n else None
        row["all_bad_rate"] = row["all_bad_rate"] / n if n else None
        row["median_seconds"] = round(median(latencies[user_id]) / 1000, 2) if latencies.get(user_id) else None
        row["gold_accuracy"] = gold.get(row["name"])
        row["agreement"] = agree.get(row["name"])
    return sorted(rows.values(), key=lambda r: r["name"])


def blank(name: str) -> dict:
    """A row before counting."""
    return {"name": name, "answers": 0, "answers_today": 0, "median_seconds": None, "skip_rate": 0,
            "all_bad_rate": 0, "gold_accuracy": None, "agreement": None, "flags": 0}


def stats_csv(rows: list[dict]) -> str:
    """The rows as CSV, for a spreadsheet; rates as fractions, empty where there is none."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows({k: "" if row[k] is None else cell(row[k]) for k in COLUMNS} for row in rows)
    return out.getvalue()


def cell(value):
    """A value as a spreadsheet should show it: a name starting with = + - @ would run as a formula there."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return value
