"""Bradley–Terry ratings for the blind arena between model versions (FastChat's compute_mle_elo, numpy only).

Written here rather than taken from `choix`, which tests/test_ratings.py checks this fit against (they agree to
0.01 Elo where both apply). choix takes only (winner, loser) pairs, so a tie or a both-bad vote would have to be
fed as a win each way; its regularisation `alpha` adds pseudo-counts between every two versions, which ties
together versions that never met; and it has no notion of components. Here the prior is virtual ties only between
versions that met, and each group of versions connected by battles is put at BASE on its own, since versions that
never met, even through others, cannot be compared.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence

import numpy as np

OUTCOMES = ("a", "b", "tie", "both_bad")
SCALE = 400  # Elo points per factor of 10 in odds, as FastChat
BASE = 1000  # the geometric-mean version sits at BASE

Battle = tuple[Hashable, Hashable, str]
# Win share of (a, b) from one battle. Ties count half a win each side, as FastChat does; both-bad counts as a tie in
# the ratings too, since neither version was preferred (the leaderboard still reports it apart).
_SHARE = {"a": (1.0, 0.0), "b": (0.0, 1.0), "tie": (0.5, 0.5), "both_bad": (0.5, 0.5)}
_TALLY = {"a": ("wins", "losses"), "b": ("losses", "wins"), "tie": ("ties", "ties"), "both_bad": ("both_bad",) * 2}


def _categories(battles: Sequence[Battle]) -> tuple[list[Hashable], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Versions, then per distinct (a, b, outcome): index of a, index of b, (share a, share b), battle count."""
    counts: Counter[Battle] = Counter()
    for a, b, outcome in battles:
        if outcome not in _SHARE:
            raise ValueError(f"unknown outcome {outcome!r}; expected one of {OUTCOMES}")
        if a == b:
            raise ValueError(f"version {a!r} cannot battle itself")
        counts[(a, b, outcome)] += 1
    versions = list(dict.fromkeys(v for a, b, _ in counts for v in (a, b)))
    index = {v: i for i, v in enumerate(versions)}
    ia = np.array([index[a] for a, _, _ in counts], dtype=int)
    ib = np.array([index[b] for _, b, _ in counts], dtype=int)
    share = np.array([_SHARE[o] for _, _, o in counts], dtype=float).reshape(-1, 2)
    return versions, ia, ib, share, np.array(list(counts.values()), dtype=float)


def _matrices(k: int, ia: np.ndarray, ib: np.ndarray, share: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, ...]:
    """Win matrix W[i, j] (win share of i over j) and symmetric battle counts N[i, j]."""
    wins, met = np.zeros((k, k)), np.zeros((k, k))
    np.add.at(wins, (ia, ib), n * share[:, 0])
    np.add.at(wins, (ib, ia), n * share[:, 1])
    np.add.at(met, (ia, ib), n)
    return wins, met + met.T


def _components(met: np.ndarray) -> np.ndarray:
    """Label of each version's connected component (smallest index in it) in the graph of pairs that met."""
    label = np.arange(len(met))
    while True:
        new = np.minimum(label, np.where(met, label[None, :], len(met)).min(axis=1))
        if (new == label).all():
            return label
        label = new


def _fit(wins: np.ndarray, n: np.ndarray, prior: float) -> np.ndarray:
    """Elo-scale ratings by Hunter's (2004) MM iterations: p_i <- W_i / sum_j N_ij / (p_i + p_j)."""
    met = n > 0
    # A version that never wins (or never loses) has its MLE at -inf (+inf). `prior` virtual ties per pair that met
    # make every rating finite, at the cost of pulling ratings slightly toward each other; 0.5 (one half-battle split
    # evenly) is small against real counts. prior=0 is the pure MLE, finite only on a strongly connected graph.
    wins, n = wins + prior / 2 * met, n + prior * met
    total, comp = wins.sum(axis=1), _components(met)
    p = np.ones(len(wins))
    with np.errstate(divide="ignore", invalid="ignore"):
        # Stopping at 0.01 Elo points of change (not a tiny absolute change in p): MM crawls on long chains of
        # versions (active vs parent), and a 10,000-iteration fit per bootstrap round made a page take seconds.
        for _ in range(2_000):
            pair = p[:, None] + p[None, :]
            denom = np.divide(n, pair, out=np.zeros_like(n), where=met & (pair > 0)).sum(axis=1)
            new = np.divide(total, denom, out=np.zeros_like(total), where=denom > 0)
            # Disconnected components cannot be compared, so each is put at BASE on its own (geometric mean 1);
            # zeros (never-winners under prior=0) are left out so the mean stays finite.
            for c in np.unique(comp):
                pos = (comp == c) & (new > 0)
                if pos.any():
                    new[comp == c] /= np.exp(np.log(new[pos]).mean())
            both = (new > 0) & (p > 0)
            done = (not both.any()) or SCALE * np.abs(np.log10(new[both]) - np.log10(p[both])).max() < 0.01
            done = done and np.array_equal(new > 0, p > 0)
            p = new
            if done:
                break
        return BASE + SCALE * np.log10(p)


def fit_ratings(battles: Sequence[Battle], *, prior: float = 0.5) -> dict[Hashable, float]:
    """Bradley–Terry maximum-likelihood ratings on the Elo scale; ties and both-bad count as half a win each side."""
    versions, ia, ib, share, n = _categories(battles)
    if not versions:
        return {}
    ratings = _fit(*_matrices(len(versions), ia, ib, share, n), prior)
    return {v: float(r) for v, r in zip(versions, ratings, strict=True)}


def bootstrap_intervals(
    battles: Sequence[Battle], *, rounds: int = 200, seed: int = 0, prior: float = 0.5
) -> dict[Hashable, tuple[float, float]]:
    """95% intervals of each rating: refit on battles resampled with replacement (percentiles 2.5 and 97.5)."""
    versions, ia, ib, share, n = _categories(battles)
    rng, total = np.random.default_rng(seed), int(n.sum())
    samples: list[list[float]] = [[] for _ in versions]
    for _ in range(rounds if versions else 0):
        # Resampling battles with replacement is a multinomial over the distinct (a, b, outcome) categories, so a
        # round costs O(categories), not O(battles).
        wins, met = _matrices(len(versions), ia, ib, share, rng.multinomial(total, n / total).astype(float))
        present = np.flatnonzero(met.sum(axis=1) > 0)  # a version drawn zero times sits this round out
        sub = np.ix_(present, present)
        for i, r in zip(present, _fit(wins[sub], met[sub], prior), strict=True):
            samples[i].append(float(r))
    # A version in no round at all (rounds=0, or vanishingly unlikely) gets its point estimate as both ends.
    point = fit_ratings(battles, prior=prior) if any(not s for s in samples) else {}
    out: dict[Hashable, tuple[float, float]] = {}
    for v, s in zip(versions, samples, strict=True):
        # Interpolating between two infinite ratings (prior=0) would give NaN, so then take the nearest sample.
        method = "linear" if np.isfinite(s).all() else "nearest"
        lo, hi = np.percentile(s, [2.5, 97.5], method=method) if s else (point[v], point[v])
        out[v] = (float(lo), float(hi))
    return out


def leaderboard(battles: Sequence[Battle], *, rounds: int = 200, seed: int = 0) -> list[dict]:
    """One row per version: rating, ci_low, ci_high, battles, wins, ties, both_bad, losses; best first."""
    ratings = fit_ratings(battles)
    intervals = bootstrap_intervals(battles, rounds=rounds, seed=seed)
    tally = {v: dict.fromkeys(("battles", "wins", "ties", "both_bad", "losses"), 0) for v in ratings}
    for a, b, outcome in battles:
        for v, key in zip((a, b), _TALLY[outcome], strict=True):
            tally[v]["battles"] += 1
            tally[v][key] += 1
    rows = []
    for v, r in ratings.items():
        lo, hi = intervals[v]
        rows.append(
            {"version_id": v, "rating": round(r, 1), "ci_low": round(lo, 1), "ci_high": round(hi, 1), **tally[v]}
        )
    return sorted(rows, key=lambda row: (-row["rating"], str(row["version_id"])))


def pair_counts(battles: Sequence[Battle]) -> list[dict]:
    """Per unordered pair (a < b by str order): {"a", "b", "battles", "a_wins", "b_wins", "ties", "both_bad"}."""
    rows: dict[tuple[Hashable, Hashable], dict] = {}
    for a, b, outcome in battles:
        lo, hi = sorted((a, b), key=str)
        empty = {"a": lo, "b": hi, **dict.fromkeys(("battles", "a_wins", "b_wins", "ties", "both_bad"), 0)}
        row = rows.setdefault((lo, hi), empty)
        row["battles"] += 1
        if outcome in ("tie", "both_bad"):
            row["ties" if outcome == "tie" else "both_bad"] += 1
        else:
            row["a_wins" if (a if outcome == "a" else b) == lo else "b_wins"] += 1
    return sorted(rows.values(), key=lambda row: (str(row["a"]), str(row["b"])))
