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


def leaderboard(battles: Sequence[Battle], *, rounds: int = 200, seed: int = 0,
                lengths: Sequence[tuple[float, float]] | None = None) -> list[dict]:
    """One row per version: rating, ci_low, ci_high, battles, wins, ties, both_bad, losses; best first. With
    lengths (each battle's answers' lengths), also the length-controlled rating and interval (`*_controlled`)."""
    ratings = fit_ratings(battles)
    intervals = bootstrap_intervals(battles, rounds=rounds, seed=seed)
    controlled = {}
    if lengths is not None and battles:
        points, _ = fit_length_controlled(battles, lengths)
        spans = controlled_intervals(battles, lengths, rounds=rounds, seed=seed)
        controlled = {v: {"rating_controlled": round(points[v], 1), "ci_low_controlled": round(spans[v][0], 1),
                          "ci_high_controlled": round(spans[v][1], 1)} for v in points}
    tally = {v: dict.fromkeys(("battles", "wins", "ties", "both_bad", "losses"), 0) for v in ratings}
    for a, b, outcome in battles:
        for v, key in zip((a, b), _TALLY[outcome], strict=True):
            tally[v]["battles"] += 1
            tally[v][key] += 1
    rows = []
    for v, r in ratings.items():
        lo, hi = intervals[v]
        rows.append(
            {"version_id": v, "rating": round(r, 1), "ci_low": round(lo, 1), "ci_high": round(hi, 1), **tally[v],
             **controlled.get(v, {})}
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


def length_feature(len_a: float, len_b: float) -> float:
    """How much longer a's answer is than b's, in [-1, 1]: (a - b) / (a + b), as LMSYS's style control normalises it."""
    total = len_a + len_b
    return (len_a - len_b) / total if total > 0 else 0.0


def _fit_controlled(k: int, ia: np.ndarray, ib: np.ndarray, x: np.ndarray, y: np.ndarray, w: np.ndarray,
                    prior: float) -> tuple[np.ndarray, float]:
    """Logistic Bradley–Terry with one covariate by Newton's method: logit P(a wins) = t_a - t_b + gamma * x.

    y is a's win share (a tie is 0.5), w the battle count. `prior` virtual ties per pair that met (at x = 0) keep
    the ratings finite, as in _fit. Returns (Elo-scale ratings, each component at BASE; gamma in logits)."""
    met = np.zeros((k, k))
    np.add.at(met, (ia, ib), w)
    met = met + met.T
    if prior > 0:
        pa, pb = np.nonzero(np.triu(met) > 0)
        ia, ib = np.concatenate([ia, pa]), np.concatenate([ib, pb])
        x, y, w = np.concatenate([x, np.zeros(len(pa))]), np.concatenate([y, np.full(len(pa), 0.5)]), \
            np.concatenate([w, np.full(len(pa), prior)])
    design = np.zeros((len(ia), k + 1))
    design[np.arange(len(ia)), ia] += 1.0
    design[np.arange(len(ia)), ib] -= 1.0
    design[:, k] = x
    beta = np.zeros(k + 1)
    for _ in range(100):
        p = 1 / (1 + np.exp(-(design @ beta)))
        gradient = design.T @ (w * (y - p))
        hessian = (design * (w * p * (1 - p))[:, None]).T @ design
        # The ratings are defined up to a constant per component: lstsq takes the minimum-norm step.
        step = np.linalg.lstsq(hessian, gradient, rcond=None)[0]
        beta = beta + step
        if np.abs(step).max() < 1e-10:
            break
    theta, comp = beta[:k], _components(met)
    for c in np.unique(comp):
        theta[comp == c] -= theta[comp == c].mean()
    return BASE + SCALE / np.log(10) * theta, float(beta[k])


def _controlled_arrays(battles: Sequence[Battle], lengths: Sequence[tuple[float, float]]):
    """Versions, then per battle: index of a, index of b, length feature, a's win share."""
    if len(battles) != len(lengths):
        raise ValueError("one (length a, length b) per battle")
    for _, _, outcome in battles:
        if outcome not in _SHARE:
            raise ValueError(f"unknown outcome {outcome!r}; expected one of {OUTCOMES}")
    versions = list(dict.fromkeys(v for a, b, _ in battles for v in (a, b)))
    index = {v: i for i, v in enumerate(versions)}
    ia = np.array([index[a] for a, _, _ in battles], dtype=int)
    ib = np.array([index[b] for _, b, _ in battles], dtype=int)
    x = np.array([length_feature(*pair) for pair in lengths], dtype=float)
    y = np.array([_SHARE[o][0] for _, _, o in battles], dtype=float)
    return versions, ia, ib, x, y


def fit_length_controlled(battles: Sequence[Battle], lengths: Sequence[tuple[float, float]], *,
                          prior: float = 0.5) -> tuple[dict[Hashable, float], float]:
    """Ratings with the answers' length difference as a covariate (Chatbot Arena's style control, length only):
    ({version: Elo-scale rating}, length coefficient in logits per unit of length_feature)."""
    versions, ia, ib, x, y = _controlled_arrays(battles, lengths)
    if not versions:
        return {}, 0.0
    ratings, gamma = _fit_controlled(len(versions), ia, ib, x, y, np.ones(len(ia)), prior)
    return {v: float(r) for v, r in zip(versions, ratings, strict=True)}, gamma


def controlled_intervals(battles: Sequence[Battle], lengths: Sequence[tuple[float, float]], *, rounds: int = 200,
                         seed: int = 0, prior: float = 0.5) -> dict[Hashable, tuple[float, float]]:
    """95% bootstrap intervals of the length-controlled ratings (battles resampled with replacement)."""
    versions, ia, ib, x, y = _controlled_arrays(battles, lengths)
    rng = np.random.default_rng(seed)
    samples: list[list[float]] = [[] for _ in versions]
    for _ in range(rounds if versions else 0):
        w = rng.multinomial(len(ia), np.full(len(ia), 1 / len(ia))).astype(float)
        drawn = w > 0
        present = np.unique(np.concatenate([ia[drawn], ib[drawn]]))
        remap = np.full(len(versions), -1)
        remap[present] = np.arange(len(present))
        ratings, _ = _fit_controlled(len(present), remap[ia[drawn]], remap[ib[drawn]], x[drawn], y[drawn], w[drawn],
                                     prior)
        for i, r in zip(present, ratings, strict=True):
            samples[i].append(float(r))
    point = fit_length_controlled(battles, lengths, prior=prior)[0] if any(not s for s in samples) else {}
    return {v: tuple(float(q) for q in np.percentile(s, [2.5, 97.5])) if s else (point[v], point[v])
            for v, s in zip(versions, samples, strict=True)}
