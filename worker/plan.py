"""What a run trains on: the start and reference versions, the held-out split, and the gate's inputs."""

from __future__ import annotations

import hashlib
import random
import traceback
from itertools import groupby
from pathlib import Path

from app.platform.extensions import db
from app.tables import ModelVersion, Prompt
from app.training.spec import TrainingSpec


def training_plan(spec: TrainingSpec, *, parent: ModelVersion, base: ModelVersion) -> tuple[ModelVersion, list, list]:
    """(init = reference version, loss types, loss weights) for the run's start setting."""
    sft, loss = spec.sft_weight, spec.loss
    if loss == "kto":
        # KTO is its own objective: no sft term beside it (its good answers are raised against the reference), and
        # only from the starter, as the settings require (app/platform/config.py).
        if spec.start != "base":
            raise ValueError("TRAIN_LOSS=kto trains from the starter: set TRAIN_START=base")
        return base, ["kto"], [1.0]
    if spec.start == "base":
        if sft > 0:
            return base, [loss, "sft"], [1.0, sft]
        return base, [loss], [1.0]
    if spec.start == "active":
        # Continuing from the last version needs the sft term, or iterated DPO displaces likelihood and collapses.
        return parent, [loss, "sft"], [1.0, sft or 1.0]
    raise ValueError(f"unknown start {spec.start!r}; use 'base' or 'active'")


def split_by_prompt(pairs: list[dict], *, holdout: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Hold out whole inputs, by a stable hash of the input: an input held out once is held out in every run.

    A fresh shuffle per run would let the parent have trained on the candidate's "held-out" inputs, and the gate
    would compare a model on its own training data against one that never saw it (measured: up to 11 of 13).
    """
    def rank(text: str) -> float:
        return int(hashlib.sha256(f"{seed}:{text}".encode()).hexdigest()[:12], 16) / 16**12

    inputs = sorted({p["input"] for p in pairs}, key=rank)
    held = {t for t in inputs if rank(t) < holdout}
    if len(inputs) >= 2 and holdout > 0:
        # Few inputs: still hold one out and still train on one, so the gate and the trainer both have data.
        held = (held or {inputs[0]}) - {inputs[-1]}
    return [p for p in pairs if p["input"] not in held], [p for p in pairs if p["input"] in held]


def run_pairs(pairs: list[dict], *, spec: TrainingSpec, parent: ModelVersion, snapshot: dict):
    """(training pairs, held-out pairs): split by input, then each side bounded by spec.max_pairs."""
    train, heldout = split_by_prompt(pairs, holdout=spec.holdout, seed=spec.seed)
    # New clicks (and votes) are those since the parent's own snapshot; the replay sample is seeded by this run's bound.
    before = (parent.manifest or {}).get("snapshot") or {}
    since = {"click": before.get("max_preference_id") or 0, "vote": before.get("votes_until") or ""}
    train = bound_pairs(train, max_pairs=spec.max_pairs, since=since,
                        seed=f"{spec.seed}:{snapshot.get('max_preference_id')}")
    return train, bound_heldout(heldout, max_pairs=spec.max_pairs // 4)


def kto_examples(train_pairs: list[dict], heldout_pairs: list[dict], *, snapshot: dict) -> list[dict]:
    """KTO's rows for a run: every candidate of the clicks its training pairs came from, labelled, plus all three
    candidates of each "all bad" answer up to the snapshot's bound, as bad, unless its input is held out."""
    from app.dataset.clicks import choice_preferences
    from app.dataset.pairs import kto_rows
    from app.dataset.snapshot import snapshot_clicks

    trained = {click_of(p) for p in train_pairs}
    held = {p["input"] for p in heldout_pairs}

    def key(click) -> tuple[str, int]:
        return ("click", click.preference_id) if click.battle_id is None else ("vote", click.battle_id)

    rows = [row for click in snapshot_clicks(snapshot) if key(click) in trained for row in kto_rows(click)]
    all_bad = choice_preferences(upto=snapshot.get("max_preference_id") or 0, verdicts=("all_bad",))
    return rows + [row for click in all_bad if click.input_text not in held for row in kto_rows(click)]


def bound_pairs(pairs: list[dict], *, max_pairs: int, since: dict, seed: str) -> list[dict]:
    """At most max_pairs pairs: answers newer than `since` ({"click": preference id, "vote": ISO vote time}) first,
    newest first (new clicks, then new votes: ids and times do not sort together), then a replay sample of older.

    With start "base" every retrain trains from the starter, so its cost grew with every click ever made (564 pairs:
    41 s, 1,882: 134 s on 2 cores). Bounded, it stays flat while the anchor stays the starter; the new clicks are
    what the served model was just shown, the replay keeps the older taste in. 0 keeps every pair.
    """
    clicks = by_click(pairs)

    def is_new(click: list[dict]) -> bool:
        if "battle_id" in click[0]:
            return click[0].get("voted_at", "") > since.get("vote", "")
        return click[0]["preference_id"] > since.get("click", 0)

    new_clicks = sorted((c for c in clicks if is_new(c) and "battle_id" not in c[0]),
                        key=lambda c: -c[0]["preference_id"])
    new_votes = sorted((c for c in clicks if is_new(c) and "battle_id" in c[0]),
                       key=lambda c: c[0].get("voted_at", ""), reverse=True)
    new = new_clicks + new_votes
    old = [c for c in clicks if not is_new(c)]
    random.Random(seed).shuffle(old)
    return take_clicks(new + old, max_pairs=max_pairs)


def bound_heldout(pairs: list[dict], *, max_pairs: int) -> list[dict]:
    """At most max_pairs held-out pairs, clicks picked by a stable hash, so the gate's cost stays flat too."""
    clicks = sorted(by_click(pairs), key=lambda c: hashlib.sha256(held_key(c[0]).encode()).hexdigest())
    return take_clicks(clicks, max_pairs=max_pairs)


def click_of(pair: dict) -> tuple[str, int]:
    """Which answer a pair came from: ("click", preference id) or, for an arena vote, ("vote", battle id)."""
    return ("vote", pair["battle_id"]) if "battle_id" in pair else ("click", pair["preference_id"])


def held_key(pair: dict) -> str:
    """The text the held-out choice hashes: a click's preference id as before, so old splits stay put."""
    kind, number = click_of(pair)
    return str(number) if kind == "click" else f"vote:{number}"


def by_click(pairs: list[dict]) -> list[list[dict]]:
    """Pairs grouped by their click or vote (build_pairs yields an answer's pairs together)."""
    return [list(group) for _, group in groupby(pairs, key=click_of)]


def take_clicks(clicks: list[list[dict]], *, max_pairs: int) -> list[dict]:
    """Whole clicks in the given order of preference while they fit in max_pairs (0: all), back in click order."""
    kept, count = [], 0
    for click in clicks:
        if not max_pairs or count + len(click) <= max_pairs:
            kept.append(click)
            count += len(click)
    return [p for click in sorted(kept, key=lambda c: click_of(c[0])) for p in click]


def evaluation_texts(train_pairs: list[dict], *, limit: int) -> list[str]:
    """Inputs for the generation check after the held-out ones: the probe set's inputs and other pool prompts it
    never trained on, then training inputs.

    Unseen inputs first: on the inputs it was just trained on, the sft term makes a model repeat its chosen answers,
    and the diversity measured there reads lower than what annotators will see on new prompts. The probe inputs lead
    because they stay the same from run to run: every version of a lineage is checked on them, as it is shown on
    them side by side."""
    from app.versions.probes import current_probes

    trained = list(dict.fromkeys(p["input"] for p in train_pairs))
    seen = set(trained)
    probes = current_probes()
    unseen = [text for text in dict.fromkeys(probes.inputs if probes else []) if text not in seen][:limit]
    seen.update(unseen)
    # Streamed, not a NOT IN list: the training inputs can outnumber a database's bound parameters.
    for text in db.session.scalars(db.select(Prompt.text).order_by(Prompt.id).execution_options(yield_per=500)):
        if len(unseen) >= limit:
            break
        if text not in seen:
            unseen.append(text)
            seen.add(text)
    return (unseen + trained)[:limit]


def error_summary(exc: BaseException) -> str:
    """The exception and the last frames it passed through, short enough for a table cell."""
    frames = traceback.extract_tb(exc.__traceback__)[-3:]
    where = " <- ".join(f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(frames))
    return (f"{type(exc).__name__}: {exc}" + (f" (at {where})" if where else ""))[:2000]
