"""Comparisons: sample three candidates for an input, store them, hand them to annotators."""

from __future__ import annotations

import random

from flask import current_app
from sqlalchemy import func, select
from sqlalchemy.orm import joinedload

from app.platform.config import sampling_settings
from app.platform.exceptions import BadInput, PoolEmpty
from app.platform.extensions import db
from app.tables import Candidate, Comparison, Prompt, utcnow


def generation_settings() -> dict:
    """The sampling settings in force, recorded on every comparison."""
    return sampling_settings(current_app.config)


def generate_comparisons(*, loaded, inputs: list[tuple[str, int | None]], user_id: int | None) -> list[Comparison]:
    """Sample candidates for each (input text, pool prompt id) in one batched call and store them (not committed).

    The comparisons of one call share its seed; each records its place in the batch, which with the seed
    reproduces its samples and its display order."""
    from app.lm.sampling import InputTooLong, sample_batch

    settings = generation_settings()
    seed = random.SystemRandom().randrange(2**31)
    model_prompts = [loaded.format_prompt(text) for text, _ in inputs]
    try:
        results = sample_batch(loaded, model_prompts=model_prompts, seed=seed, **settings)
    except InputTooLong as exc:
        raise BadInput(str(exc), status=413) from exc
    comparisons = []
    for index, ((input_text, prompt_id), model_prompt, (texts, raw)) in enumerate(
        zip(inputs, model_prompts, results, strict=True)
    ):
        order = list(range(len(texts)))
        random.Random(seed + index).shuffle(order)  # shown in random order, reproducible from seed and index
        comparison = Comparison(
            prompt_id=prompt_id,
            input_text=input_text,
            model_prompt=model_prompt,
            model_version_id=loaded.version_id,
            settings=settings | {"raw_distinct": len(set(raw)), "batch_size": len(inputs), "batch_index": index},
            seed=seed,
            state="assigned" if user_id else "ready",
            user_id=user_id,
            assigned_at=utcnow() if user_id else None,
        )
        comparison.candidates = [
            Candidate(position=pos, sample_index=idx, text=texts[idx]) for pos, idx in enumerate(order)
        ]
        db.session.add(comparison)
        comparisons.append(comparison)
    return comparisons


def next_pool_prompts(*, limit: int = 1) -> list[Prompt]:
    """The pool prompts with the fewest comparisons so far (oldest first among equals)."""
    open_count = (
        select(func.count(Comparison.id))
        .where(Comparison.prompt_id == Prompt.id, Comparison.state != "stale")
        .scalar_subquery()
    )
    prompts = list(db.session.scalars(select(Prompt).order_by(open_count, Prompt.id).limit(limit)))
    if not prompts:
        raise PoolEmpty("the prompt pool is empty; import prompts first")
    return prompts


def load_comparison(comparison_id: int) -> Comparison | None:
    """A comparison with its candidates and answer in one statement (every click reads all three)."""
    return db.session.scalars(
        select(Comparison)
        .options(joinedload(Comparison.candidates), joinedload(Comparison.preference))
        .where(Comparison.id == comparison_id)
    ).unique().one_or_none()


def get_comparison(*, comparison_id: int, user_id: int | None = None) -> Comparison:
    """Fetch a comparison; with user_id, only one assigned to that user."""
    comparison = load_comparison(comparison_id)
    if comparison is None or (user_id is not None and comparison.user_id != user_id):
        raise BadInput(f"comparison {comparison_id} not found", status=404)
    return comparison
