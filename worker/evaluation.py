"""The gate: is a freshly trained version better than its parent on held-out clicks, and still healthy?

Two kinds of evidence, because either alone is fooled:
- Held-out preference accuracy. The reward of a completion is its summed log-prob under the model minus that under
  the base (the root starter): DPO's implicit reward without beta. A pair counts as right when the chosen reward
  beats the rejected one (a tie counts half, so the base itself scores exactly 0.5: no preference).
- Generation health on held-out prompts. A collapsed model (likelihood displacement) still ranks
  chosen over rejected, so held-out accuracy stays high while its samples turn to gibberish. Sampling and scoring
  the samples under the base model catches that: fluency (per-token log-prob under the base), diversity (the
  expected number of distinct strings among num_candidates raw samples, estimated from `samples` per input, with its
  standard error across inputs) and length against the parent.

Pairs and samples are scored by the model core's one encoder and scorer (app/lm/scoring.py), with the run's
max_length: the same tokens the trainer trained on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict

from app.lm.checkpoint import LoadedModel, load_checkpoint
from app.lm.encoding import completion_text
from app.lm.sampling import InputTooLong, sample_candidates
from app.lm.scoring import completion_logps
from app.training.spec import TrainingSpec

TIE = 1e-4  # log-prob differences below this are numerical noise, not a preference
# Held-out clicks are few (6-9 held-out inputs after a first round of 65 clicks, ~33 after a third) and noisy: once
# the served model is good, two of its three candidates often please the annotator alike and the click between them
# is a coin flip. A strict "accuracy must not fall" rejected versions the judge scored far better (89% good vs 68%)
# for 11 vs 13 of 15 pairs. So a candidate is "worse" only when a paired test says so at this level.
WORSE_P = 0.05
# The pairs of one click share its chosen text, so they are not independent: the test resamples held-out inputs,
# not pairs (a paired randomization test by input, flip_test).
# "No better" (accuracy and margin both no higher than the parent's) is asked only of this many held-out pairs or
# more. Below it the accuracy's standard error is over 0.05 (0.11 on the ~20 pairs of a first 67-click round), and
# the rule kept out versions the loop measured far better (56.2% good vs 38.3%, docs/BENCHMARKS.md); fewer pairs
# can still show "worse", and the generation checks still apply.
BETTER_MIN_PAIRS = 100


def sign_test(worse: int, better: int) -> float:
    """One-sided exact sign test: the chance of `worse` or more of the discordant pairs going against, if even."""
    from math import comb

    n = worse + better
    return sum(comb(n, k) for k in range(worse, n + 1)) / 2**n if n else 1.0


def flip_test(differences: list[float]) -> float:
    """One-sided paired randomization test by input: the chance, if candidate and parent were exchangeable within
    each input, of a total difference as low as the one seen (each input's difference flips sign with chance 1/2).

    Exact: a pair counts 0, 1/2 or 1 for each model, so every difference is a multiple of 1/2, and the distribution
    of the flipped total is a convolution over those steps. A percentile bootstrap over inputs was the other way to
    resample by input; with few inputs it is far too sure (two inputs that both went the parent's way give p = 0
    there, 0.25 here), and the gate's inputs are few."""
    import numpy as np

    halves = [d * 2 for d in differences if abs(d) > TIE]
    steps = [round(abs(h)) for h in halves]
    if any(abs(abs(h) - k) > 1e-6 for h, k in zip(halves, steps, strict=True)):
        raise ValueError(f"held-out differences are multiples of 1/2, got {differences}")
    if not steps:
        return 1.0
    low = -sum(steps)  # the total with every sign against: index 0 of the distribution below
    dist = np.ones(1)
    for k in steps:
        grown = np.zeros(len(dist) + 2 * k)
        grown[: len(dist)] += dist / 2
        grown[2 * k:] += dist / 2
        dist = grown
    seen = round(sum(halves))
    return float(min(1.0, dist[: seen - low + 1].sum()))


def pair_logps(model: LoadedModel, pairs: list[dict], *, max_length: int | None) -> tuple[list[float], list[float]]:
    """(chosen, rejected) summed log-probs of each pair under `model`."""
    prompts = [p["prompt"] for p in pairs]
    chosen, _ = completion_logps(model, prompts, [p["chosen"] for p in pairs], max_length=max_length)
    rejected, _ = completion_logps(model, prompts, [p["rejected"] for p in pairs], max_length=max_length)
    return chosen, rejected


def preference_scores(
    model: LoadedModel, base_logps: tuple[list[float], list[float]], pairs: list[dict], *, max_length: int | None,
    logps: tuple[list[float], list[float]] | None = None,
) -> dict:
    """Accuracy and mean margin of `model`'s reward (log-prob minus base log-prob) on pairs; `logps`: the model's
    pair log-probs when already scored (the base's own are base_logps)."""
    chosen, rejected = logps or pair_logps(model, pairs, max_length=max_length)
    base_chosen, base_rejected = base_logps
    rights, margins, raw_right = [], [], 0
    for c, r, bc, br in zip(chosen, rejected, base_chosen, base_rejected, strict=True):
        margin = (c - bc) - (r - br)
        margins.append(margin)
        rights.append(0.5 if abs(margin) < TIE else float(margin > 0))
        raw_right += c > r
    n = len(pairs)
    return {
        "accuracy": sum(rights) / n,
        "rights": rights,  # per pair, for the paired comparison with the parent
        "margin": sum(margins) / n,
        "logp_accuracy": raw_right / n,  # the plain likelihood ranking, for reference (length-biased)
        "chosen_logp": sum(chosen) / n,  # falls under likelihood displacement
    }


def expected_distinct(samples: list[str], k: int) -> float:
    """Unbiased estimate, from m >= k raw samples, of the expected number of distinct strings among k draws.

    A string seen c times of m is missing from k draws with chance estimated by C(m-c, k) / C(m, k): for k = 3 the
    sum is the U-statistic of 3 - 3 sum(p^2) + sum(p^3). The plug-in p = c/m reads low: 12 samples that all differ
    give 2.76 with it, where this gives 3.
    """
    from collections import Counter
    from math import comb

    m = len(samples)
    if m < k:
        raise ValueError(f"need at least {k} samples to estimate distinct of {k}, got {m}")
    return sum(1 - comb(m - c, k) / comb(m, k) for c in Counter(samples).values())


def mean_and_se(values: list[float]) -> tuple[float, float]:
    """Mean and its standard error (0 for a single value)."""
    from statistics import mean, stdev

    return mean(values), (stdev(values) / len(values) ** 0.5 if len(values) > 1 else 0.0)


def raw_samples(model: LoadedModel, text: str, *, samples: int, seed: int, temperature: float, top_p: float,
                min_p: float, max_new_tokens: int, system_prompt: str = "") -> list[str]:
    """`samples` draws for one input as serving renders it, duplicates kept (what diversity is measured on)."""
    return sample_candidates(model, model_prompt=model.format_prompt(text, system_prompt=system_prompt), n=samples,
                             temperature=temperature, top_p=top_p, min_p=min_p, max_new_tokens=max_new_tokens,
                             seed=seed, dedup_tries=0)[1]


def generation_health(
    model: LoadedModel,
    base: LoadedModel,
    texts: list[str],
    *,
    samples: int,
    k: int,
    seed: int,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
    max_length: int | None = None,
    min_p: float = 0.0,
    system_prompt: str = "",
) -> dict:
    """Sample `samples` per input; fluency under the base, expected distinct of k (with its SE), mean length.

    Inputs are rendered as serving renders them (a chat model: after the task's system prompt)."""
    distinct, lengths, base_prompts, completions, examples, sampled = [], [], [], [], [], []
    for i, text in enumerate(texts):
        try:
            raw = raw_samples(model, text, samples=samples, seed=seed + i, temperature=temperature, top_p=top_p,
                              min_p=min_p, max_new_tokens=max_new_tokens, system_prompt=system_prompt)
        except InputTooLong:
            continue
        distinct.append(expected_distinct(raw, k))
        sampled.append(text)
        lengths.extend(len(model.tokenizer(s, add_special_tokens=False)["input_ids"]) for s in raw)
        base_prompt = base.format_prompt(text, system_prompt=system_prompt)
        base_prompts.extend([base_prompt] * len(raw))
        completions.extend(completion_text(base_prompt, s) for s in raw)  # as build_pairs makes them
        if len(examples) < 3:
            examples.append({"input": text, "samples": raw[:k]})
    if not completions:
        return {"fluency": None, "distinct": None, "distinct_se": None, "length": None, "examples": [],
                "distinct_by_input": {}}
    sums, counts = completion_logps(base, base_prompts, completions, max_length=max_length)
    per_token = [s / max(c, 1) for s, c in zip(sums, counts, strict=True)]
    distinct_mean, distinct_se = mean_and_se(distinct)
    return {
        "fluency": sum(per_token) / len(per_token),
        "distinct": distinct_mean,
        "distinct_se": distinct_se,
        "length": sum(lengths) / len(lengths),
        "examples": examples,
        "distinct_by_input": dict(zip(sampled, distinct, strict=True)),  # for the paired comparison, not stored
    }


def evaluate_version(
    *,
    candidate: LoadedModel,
    parent: LoadedModel,
    base: LoadedModel,
    heldout_pairs: list[dict],
    eval_prompts: list[str],
    gate_cfg: dict,
    num_candidates: int = 3,
    seed: int = 0,
    temperature: float = 1.0,
    top_p: float = 0.95,
    min_p: float = 0.0,
    max_new_tokens: int = 80,  # the served default (MAX_NEW_TOKENS); a run passes its spec
    max_length: int | None = None,
    system_prompt: str = "",
    ancestors: list[tuple[int, Callable[[], LoadedModel]]] = (),
) -> dict:
    """Compare candidate with parent; return metrics plus passed and human-readable rejection reasons.

    eval_prompts: more input texts, used after the held-out inputs until gate_cfg["eval_prompts"] are reached.
    ancestors: (version id, loader) of earlier versions of the lineage, each loaded in turn when there are held-out
    pairs, which the candidate must not rank worse than either (ancestor_tests).
    """
    samples = int(gate_cfg["samples"])
    metrics: dict = {"heldout_pairs": len(heldout_pairs), "samples_per_prompt": samples,
                     "distinct_of": num_candidates, "notes": []}
    if heldout_pairs:
        base_logps = pair_logps(base, heldout_pairs, max_length=max_length)
        for name, model in (("candidate", candidate), ("parent", parent)):
            for key, value in preference_scores(model, base_logps, heldout_pairs, max_length=max_length).items():
                metrics[f"{key}_{name}"] = value
        rights = metrics.pop("rights_candidate")
        pairs = list(zip(rights, metrics.pop("rights_parent"), strict=True))
        # The pairs each model ranks right and the other wrong: what a paired test of "worse" looks at.
        metrics["heldout_candidate_only"] = sum(c > p for c, p in pairs)
        metrics["heldout_parent_only"] = sum(p > c for c, p in pairs)
        metrics.update(differences_by_input(heldout_pairs, pairs))
        if ancestors:
            metrics["ancestors"] = ancestor_tests(rights, ancestors, heldout_pairs, base, base_logps,
                                                  max_length=max_length)
    else:
        metrics["notes"].append("no held-out pairs: preference accuracy was not checked")

    texts: list[str] = []
    for text in [p["input"] for p in heldout_pairs] + list(eval_prompts):
        if text not in texts and len(texts) < int(gate_cfg["eval_prompts"]):
            texts.append(text)
    metrics["eval_prompts"] = len(texts)
    gen = dict(samples=samples, k=num_candidates, seed=seed, temperature=temperature, top_p=top_p, min_p=min_p,
               max_new_tokens=max_new_tokens, max_length=max_length, system_prompt=system_prompt)
    for name, model in (("candidate", candidate), ("parent", parent)):
        for key, value in generation_health(model, base, texts, **gen).items():
            metrics[f"{key}_{name}"] = value
    metrics.update(distinct_drop(metrics.pop("distinct_by_input_candidate"), metrics.pop("distinct_by_input_parent")))

    reasons = gate_reasons(metrics, gate_cfg)
    return {**metrics, "passed": not reasons, "reasons": reasons}


def differences_by_input(heldout_pairs: list[dict], rights: list[tuple[float, float]]) -> dict:
    """Per held-out input, the pairs the candidate ranks right minus those the parent does; the test on them."""
    by_input: dict[str, float] = {}
    for pair, (c, p) in zip(heldout_pairs, rights, strict=True):
        by_input[pair["input"]] = by_input.get(pair["input"], 0.0) + c - p
    differences = sorted(by_input.values())  # kept (without the texts) so the test can be replayed from a run
    return {"heldout_inputs": len(differences), "heldout_differences": differences,
            "heldout_p_worse": flip_test(differences)}


def ancestor_tests(rights: list[float], ancestors, heldout_pairs: list[dict], base: LoadedModel, base_logps, *,
                   max_length: int | None) -> list[dict]:
    """The test of "worse" against each earlier version of the lineage, on the same held-out pairs.

    Evidence carried across rounds: each round's gate sees few held-out clicks, so a version a little worse than its
    parent passes, and the next, a little worse again, passes against it. Tested against the grandparent and beyond
    on every click held out so far, the two steps add up. The earlier versions share the 5% level (Bonferroni:
    each is tested at WORSE_P / their number), so the family cries wolf no more than the parent's test does."""
    level = WORSE_P / len(ancestors)
    tests = []
    for version_id, load in ancestors:
        try:
            model = load()
        except (OSError, ValueError) as exc:
            # Its files gone or unreadable: that earlier version cannot be compared, which must not stop the run.
            tests.append({"version_id": version_id, "error": f"{type(exc).__name__}: {exc}"[:300]})
            continue
        # The starter is often among them, and its pairs are scored already (base_logps): not again.
        scores = preference_scores(model, base_logps, heldout_pairs, max_length=max_length,
                                   logps=base_logps if model is base else None)
        pairs = list(zip(rights, scores["rights"], strict=True))
        by_input = differences_by_input(heldout_pairs, pairs)
        tests.append({"version_id": version_id, "accuracy": scores["accuracy"], "level": level,
                      "candidate_only": sum(c > a for c, a in pairs), "ancestor_only": sum(a > c for c, a in pairs),
                      "inputs": by_input["heldout_inputs"], "p_worse": by_input["heldout_p_worse"]})
    return tests


def p_worse(m: dict) -> tuple[float, str]:
    """The gate's p-value for "the candidate is worse", and the test's name (runs gated before the test by input
    recorded only the pair counts: those are read with the sign test over pairs they were gated with)."""
    if m.get("heldout_p_worse") is not None:
        return m["heldout_p_worse"], f"paired randomization test over {m.get('heldout_inputs')} inputs"
    return sign_test(m["heldout_parent_only"], m["heldout_candidate_only"]), "sign test over pairs"


def distinct_drop(candidate: dict[str, float], parent: dict[str, float]) -> dict:
    """The parent's expected distinct minus the candidate's, paired by input, with its standard error."""
    both = [text for text in candidate if text in parent]
    if len(both) < 2:  # one input has no standard error to compare a drop with
        return {"distinct_drop": None, "distinct_drop_se": None, "distinct_drop_inputs": len(both)}
    drop, se = mean_and_se([parent[t] - candidate[t] for t in both])
    return {"distinct_drop": drop, "distinct_drop_se": se, "distinct_drop_inputs": len(both)}


def heldout_reasons(m: dict) -> list[str]:
    """The held-out clicks' verdicts: worse than the parent or an earlier version, no better, or unchanged."""
    reasons = []
    if m.get("accuracy_candidate") is None:
        return reasons
    acc_c, acc_p = m["accuracy_candidate"], m["accuracy_parent"]
    better, worse = m["heldout_candidate_only"], m["heldout_parent_only"]
    p, test = p_worse(m)
    if p < WORSE_P:
        reasons.append(
            f"held-out preference accuracy fell: {acc_c:.2f} < parent {acc_p:.2f}; the parent ranks {worse} "
            f"held-out pairs right that the candidate gets wrong, against {better} the other way "
            f"(one-sided {test}, p = {p:.3f} < {WORSE_P})"
        )
    elif (m.get("heldout_pairs", 0) >= BETTER_MIN_PAIRS and acc_c <= acc_p
          and m["margin_candidate"] <= m["margin_parent"]):
        reasons.append(
            f"no better on held-out pairs: accuracy {acc_c:.2f} vs parent {acc_p:.2f}, and the margin did not "
            f"grow ({m['margin_candidate']:.3f} <= {m['margin_parent']:.3f}) on {m['heldout_pairs']} pairs"
        )
    elif better == worse == 0 and abs(m["margin_candidate"] - m["margin_parent"]) < TIE:
        reasons.append("unchanged: the candidate scores every held-out pair as its parent does, so training "
                       "taught it nothing")
    for test in m.get("ancestors") or []:
        if "p_worse" in test and test["p_worse"] < test["level"]:
            reasons.append(
                f"held-out preference accuracy fell below that of version {test['version_id']}, an earlier "
                f"version of this lineage: {acc_c:.2f} vs {test['accuracy']:.2f}; it ranks "
                f"{test['ancestor_only']} held-out pairs right that the candidate gets wrong, against "
                f"{test['candidate_only']} the other way (one-sided paired randomization test over "
                f"{test['inputs']} inputs, p = {test['p_worse']:.4f} < {test['level']:.4f}, the {WORSE_P} level "
                f"shared by the {len(m['ancestors'])} earlier versions tested)"
            )
    return reasons


def gate_reasons(m: dict, gate_cfg: dict) -> list[str]:
    """Why the candidate must not be promoted; empty when it passes."""
    reasons = heldout_reasons(m)
    if m.get("fluency_candidate") is None:
        reasons.append("no evaluation prompt could be sampled, so generation health is unknown")
        return reasons
    drop = m["fluency_parent"] - m["fluency_candidate"]
    max_drop = float(gate_cfg["max_fluency_drop"])
    if drop > max_drop:
        reasons.append(
            f"fluency fell by {drop:.2f} nats/token under the base model (limit {max_drop:.2f}): "
            f"{m['fluency_candidate']:.2f} vs parent {m['fluency_parent']:.2f}"
        )
    reasons += diversity_reasons(m, gate_cfg)
    ratio = float(gate_cfg["max_length_ratio"])
    length_c, length_p = m["length_candidate"], m["length_parent"]
    if length_c > ratio * length_p:
        reasons.append(f"samples grew too long: {length_c:.1f} tokens vs parent {length_p:.1f} (ratio limit {ratio})")
    elif length_c < length_p / ratio:
        reasons.append(f"samples shrank too much: {length_c:.1f} tokens vs parent {length_p:.1f} (ratio limit {ratio})")
    return reasons


def diversity_reasons(m: dict, gate_cfg: dict) -> list[str]:
    """The gate's diversity rules: against the parent, paired by input, and the optional absolute floor."""
    reasons = []
    min_distinct = float(gate_cfg["min_distinct"])
    if m["distinct_candidate"] < min_distinct:
        reasons.append(
            f"samples lost diversity: {m['distinct_candidate']:.2f} +- {m.get('distinct_se_candidate') or 0:.2f} "
            f"expected distinct of {m.get('distinct_of', 3)} (minimum {min_distinct}; estimated from "
            f"{m.get('samples_per_prompt', 3)} samples per input)"
        )
    max_se = gate_cfg.get("max_distinct_drop_se")
    drop, drop_se = m.get("distinct_drop"), m.get("distinct_drop_se")
    if max_se is not None and drop is not None and drop > 0 and drop > float(max_se) * drop_se:
        reasons.append(
            f"samples lost diversity against the parent: {m['distinct_candidate']:.2f} vs {m['distinct_parent']:.2f} "
            f"expected distinct of {m.get('distinct_of', 3)}, a drop of {drop:.2f} over {float(max_se):g} x its "
            f"standard error {drop_se:.2f} (paired over {m.get('distinct_drop_inputs')} inputs)"
        )
    return reasons


def why_passed(m: dict) -> str:
    """Why a candidate passed, in numbers an operator can check: the held-out pairs, the paired sign test, the
    generation checks."""
    if m.get("accuracy_candidate") is None:
        held = "no held-out pairs to compare on"
    else:
        worse, better = m["heldout_parent_only"], m["heldout_candidate_only"]
        p, test = p_worse(m)
        held = (f"held-out accuracy {m['accuracy_candidate']:.2f} vs parent {m['accuracy_parent']:.2f} on "
                f"{m['heldout_pairs']} pairs; a candidate is held back as worse only when a one-sided {test} says "
                f"so at p < {WORSE_P}: {worse} pairs went the parent's way and {better} its own (p = {p:.2f})")
        if m["heldout_pairs"] < BETTER_MIN_PAIRS:
            held += f"; 'no better' is judged from {BETTER_MIN_PAIRS} pairs on"
        if m.get("ancestors"):
            held += "; no worse than the earlier versions " + ", ".join(
                f"{t['version_id']} (p = {t['p_worse']:.2f})" if "p_worse" in t else f"{t['version_id']} (not read)"
                for t in m["ancestors"])
    return (f"{held}; samples healthy: fluency {m['fluency_candidate']:.2f} vs {m['fluency_parent']:.2f} nats/token, "
            f"{m['distinct_candidate']:.2f} distinct of {m.get('distinct_of', 3)}, length "
            f"{m['length_candidate']:.1f} vs {m['length_parent']:.1f} tokens")


def gate_checkpoint(*, path: str, parent, base, spec: TrainingSpec, heldout_pairs: list[dict],
                    eval_prompts: list[str]) -> dict:
    """Gate the published checkpoint at `path` against the parent version (and up to spec.gate.ancestors earlier
    versions of its lineage), with the run's spec."""
    from app.versions.registry import lineage
    from app.versions.store import local_copy

    earlier = lineage(parent)[1 : 1 + spec.gate.ancestors]
    keep = {parent.id, base.id} | {v.id for v in earlier}
    candidate = load_checkpoint(local_copy(path, keep=keep))
    parent_loaded = load_checkpoint(local_copy(parent.path, keep=keep), version_id=parent.id)
    base_loaded = (parent_loaded if base.id == parent.id
                   else load_checkpoint(local_copy(base.path, keep=keep), version_id=base.id))

    def loader(version):
        # One earlier version in memory at a time (each is a full model); the base is loaded already.
        if version.id == base.id:
            return lambda: base_loaded
        return lambda: load_checkpoint(local_copy(version.path, keep=keep), version_id=version.id)

    return evaluate_version(
        candidate=candidate, parent=parent_loaded, base=base_loaded, heldout_pairs=heldout_pairs,
        eval_prompts=eval_prompts, gate_cfg=asdict(spec.gate), num_candidates=spec.num_candidates, seed=spec.seed,
        temperature=spec.temperature, top_p=spec.top_p, min_p=spec.min_p, max_new_tokens=spec.max_new_tokens,
        max_length=spec.max_length, system_prompt=spec.system_prompt,
        ancestors=[(v.id, loader(v)) for v in earlier],
    )
