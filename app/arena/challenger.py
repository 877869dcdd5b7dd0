"""Champion and challenger: where the challenger stands in the arena, and the optional rule that decides for it."""

from __future__ import annotations

from flask import current_app

from app.arena.battles import outcomes
from app.arena.ratings import leaderboard
from app.versions.registry import (
    active_version_id,
    challenger_version_id,
    promote_challenger,
    retire_challenger,
)


def verdict(champion: dict, challenger: dict) -> str:
    """"ahead" when the challenger's 95% interval lies wholly above the champion's, "behind" when wholly below,
    else "undecided"."""
    if challenger["ci_low"] > champion["ci_high"]:
        return "ahead"
    if challenger["ci_high"] < champion["ci_low"]:
        return "behind"
    return "undecided"


def challenger_standing() -> dict | None:
    """The challenger's record against the champion (their battles only): votes, its wins, ties and losses, its
    win rate (a tie or both-bad counts half), both ratings with 95% intervals, and the verdict; None without one."""
    champion, challenger = active_version_id(), challenger_version_id()
    if champion is None or challenger is None:
        return None
    battles = outcomes(versions=(champion, challenger))
    rows = {r["version_id"]: r for r in leaderboard(battles, rounds=current_app.config["ARENA_BOOTSTRAP_ROUNDS"])}
    out = {"champion": champion, "challenger": challenger, "votes": len(battles),
           "min_votes": current_app.config["CHALLENGER_MIN_VOTES"], "decide": current_app.config["CHALLENGER_DECIDE"],
           "verdict": "undecided", "win_rate": None, "ratings": []}
    if not battles:
        return out
    ch = rows[challenger]
    out.update(wins=ch["wins"], losses=ch["losses"], ties=ch["ties"], both_bad=ch["both_bad"],
               win_rate=round((ch["wins"] + (ch["ties"] + ch["both_bad"]) / 2) / len(battles), 3),
               verdict=verdict(rows[champion], ch),
               ratings=[{"version_id": v, "role": role, "rating": rows[v]["rating"], "ci_low": rows[v]["ci_low"],
                         "ci_high": rows[v]["ci_high"]}
                        for v, role in ((champion, "champion"), (challenger, "challenger"))])
    return out


def decide_by_rule() -> str | None:
    """With CHALLENGER_DECIDE=auto: promote an ahead challenger, or retire a behind one, once it has at least
    CHALLENGER_MIN_VOTES votes against the champion. Returns what was done ("promoted", "retired") or None."""
    if current_app.config["CHALLENGER_DECIDE"] != "auto":
        return None
    standing = challenger_standing()
    if standing is None or standing["votes"] < standing["min_votes"] or standing["verdict"] == "undecided":
        return None
    ch, champ = standing["ratings"][1], standing["ratings"][0]
    reason = (f"arena rule: {standing['verdict']} after {standing['votes']} votes (win rate "
              f"{standing['win_rate']:.0%}; rating {ch['rating']:.0f} [{ch['ci_low']:.0f}, {ch['ci_high']:.0f}] "
              f"against the champion's {champ['rating']:.0f} [{champ['ci_low']:.0f}, {champ['ci_high']:.0f}])")
    if standing["verdict"] == "ahead":
        promote_challenger(version_id=standing["challenger"], actor="arena", reason=reason)
        return "promoted"
    retire_challenger(version_id=standing["challenger"], actor="arena", reason=reason)
    return "retired"
