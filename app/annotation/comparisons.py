"""Comparisons: sample three candidates for an input, store them, and hand them out: an annotator's own unanswered
one first; else a copy of one another annotator holds (overlap), now and then a gold item, the prefetched buffer, or
a fresh sample of the next pool prompt."""

from __future__ import annotations

import random

from flask import current_app
from sqlalchemy import and_, exists, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import aliased, joinedload

from app.accounts.security import limit_generation
from app.annotation.gold import claim_gold
from app.annotation.task import current_task
from app.lm.sampling import sampling_settings
from app.platform.exceptions import BadInput, Busy, PoolEmpty
from app.platform.extensions import db
from app.platform.validation import clean_text
from app.tables import Candidate, Comparison, Flag, ModelVersion, Preference, Prompt, TaskRevision, utcnow
from app.versions.serving import get_holder


def generation_settings() -> dict:
    """The sampling settings in force, recorded on every comparison."""
    return sampling_settings(current_app.config)


def waiting_bound(waiting: bool) -> dict:
    """sample_coalesced's bound on a request someone waits for (none for the prefetcher, which waits its turn)."""
    cfg = current_app.config
    return {"max_wait": cfg["MAX_WAIT_SECONDS"], "slots": cfg["SAMPLING_SLOTS"]} if waiting else {}


def live_handoff(version_id: int | None = None) -> tuple | None:
    """(Redis client, key names, heartbeat) when requests are handed to a live prefetcher (SAMPLE_REQUESTS_IN)
    that serves `version_id` (any, if None) and is not starved of CPU; None when they sample in this process."""
    import redis

    from app.versions.handoff import keys, prefetcher_state, redis_for, starved

    app = current_app._get_current_object()
    conn = redis_for(app) if app.config["SAMPLE_REQUESTS_IN"] == "prefetcher" else None
    if conn is None:
        return None
    names = keys(app)
    try:
        state = prefetcher_state(conn, names)
    except redis.RedisError:
        return None
    if (state is None or starved(state, min_share=app.config["HANDOFF_MIN_CPU_SHARE"])
            or (version_id is not None and state["version_id"] != version_id)):
        return None
    return conn, names, state


def sample_inputs(*, loaded, model_prompts: list[str], settings: dict, waiting: bool, pool: bool = False):
    """(results, seed, offset, size, where) for the prompts, where says what sampled them: "buffer" (the
    prefetcher's refill), "prefetcher" (a request handed to it) or "web" (the request's own process). A request
    someone waits for goes to the live prefetcher
    (app/versions/handoff.py), batched with every request waiting then; otherwise, or when the prefetcher cannot
    take it, it samples in this process, batched with this process's waiting requests. `pool`: any ready
    comparison would serve these (handoff.FromBuffer when the prefetcher says the buffer has one)."""
    import redis

    from app.lm.sampling import check_prompts, sample_coalesced
    from app.versions.handoff import NotServed, sample_in_prefetcher

    handoff = live_handoff(loaded.version_id) if waiting else None
    if handoff is not None:
        check_prompts(loaded, model_prompts, settings)
        try:
            return (*sample_in_prefetcher(*handoff, version_id=loaded.version_id, model_prompts=model_prompts,
                                          settings=settings, pool=pool, **waiting_bound(True)), "prefetcher")
        except (NotServed, redis.RedisError) as exc:  # a swap under way, or Redis gone: sample here instead
            current_app.logger.warning("the prefetcher did not sample a request (%s); sampling it here", exc)
    return (*sample_coalesced(loaded, model_prompts=model_prompts, seed=random.SystemRandom().randrange(2**31),
                              **waiting_bound(waiting), **settings), "web" if waiting else "buffer")


def refuse_if_busy(*, buffered=None) -> None:
    """Before a request spends its generation budget: refuse it (Busy, 503) if the sampler would refuse it now, so
    that a refused request costs the annotator nothing. `buffered`: for a request that would take a prefetched one
    if there is any, a function saying whether there is; it is asked only when the sampler is full."""
    import redis

    from app.lm.sampling import check_room
    from app.versions import handoff

    try:
        live = live_handoff()
        if live is not None:
            handoff.check_room(*live, 1, **waiting_bound(True))
        else:
            check_room(1, **waiting_bound(True))
    except redis.RedisError:
        return  # the request then samples in this process, which sample_coalesced bounds itself
    except Busy:
        if buffered is not None and buffered():
            return
        raise


def buffered_now() -> bool:
    """Whether the serving version has a prefetched comparison under the task revision in force."""
    loaded = get_holder(current_app._get_current_object()).current()
    return claimable_count(version_id=loaded.version_id) > 0


def claimable_count(*, version_id: int) -> int:
    """Ready comparisons of the version that claim_prefetched may hand out."""
    return db.session.scalar(select(func.count(Comparison.id)).where(claimable(version_id=version_id))) or 0


def claimable(*, version_id: int, revision: int | None = None):
    """SQL: a ready comparison of the version, rendered under the task revision in force (`revision`, else the
    newest, read in the same statement), whose input is still in the queue (a refill under way when its prompt was
    flagged stores rows nobody may be handed)."""
    in_force = revision if revision is not None else select(func.max(TaskRevision.id)).scalar_subquery()
    return and_(Comparison.state == "ready", Comparison.model_version_id == version_id,
                Comparison.task_revision_id == in_force, in_queue(Comparison.prompt_id))


def request_settings() -> dict:
    """What a comparison is sampled with: the served settings, with ACTIVE_CANDIDATES samples when it is on."""
    active = current_app.config["ACTIVE_CANDIDATES"]
    return generation_settings() | ({"n": active} if active else {})


def generate_comparisons(*, loaded, inputs: list[tuple[str, int | None]], user_id: int | None,
                         waiting: bool = False, pool: bool = False) -> list[Comparison]:
    """Sample candidates for each (input text, pool prompt id) in one batched call and store them (not committed).

    The comparisons of one batch (this call's, with those of concurrent requests it was batched with) share its
    seed; each records its place in the batch, which with the seed reproduces its samples and its display order.
    `waiting`: someone waits for these (a request), so past MAX_WAIT_SECONDS or the sampling slots this raises Busy
    rather than queue; the prefetcher waits its turn. `pool`: a pool request, which the buffer serves as well
    (handoff.FromBuffer, raised to the caller, when the prefetcher answers so)."""
    from app.lm.sampling import InputTooLong

    task = current_task()
    model_prompts = [loaded.format_prompt(text, system_prompt=task.system_prompt) for text, _ in inputs]
    try:
        # Batched with the other requests that wait for the sampler now (issue 28): past capacity each would
        # otherwise sample alone, at about twice the cost per comparison.
        results, seed, offset, size, where = sample_inputs(loaded=loaded, model_prompts=model_prompts,
                                                           waiting=waiting, settings=request_settings(), pool=pool)
    except InputTooLong as exc:
        raise BadInput(str(exc), status=413) from exc
    return store_comparisons(loaded=loaded, task=task, inputs=inputs, model_prompts=model_prompts, results=results,
                             seed=seed, offset=offset, size=size, where=where, user_id=user_id)


def store_comparisons(*, loaded, task: TaskRevision, inputs: list[tuple[str, int | None]], model_prompts: list[str],
                      results: list, seed: int, offset: int, size: int, where: str,
                      user_id: int | None) -> list[Comparison]:
    """Store the sampled candidates of `inputs` (rendered as `model_prompts` under `task`; their results, at
    `offset` in a batch of `size` under `seed`) as comparisons (not committed): assigned to user_id, or ready in
    the buffer when it is None."""
    settings = generation_settings()
    active = current_app.config["ACTIVE_CANDIDATES"]
    if active:
        from app.lm.uncertainty import least_sure

        # raw stays the first n raw samples, what n samples alone would have been, so raw_distinct keeps its meaning.
        reference = active_reference(loaded)
        results = [(least_sure(loaded, reference, model_prompt=model_prompt, texts=texts, n=settings["n"],
                               reference_prompt=reference.format_prompt(text, system_prompt=task.system_prompt)
                               if reference is not None else model_prompt), raw[: settings["n"]])
                   for (text, _), model_prompt, (texts, raw) in zip(inputs, model_prompts, results, strict=True)]
        settings = settings | {"active_candidates": active}
    comparisons = []
    for index, ((input_text, prompt_id), model_prompt, (texts, raw)) in enumerate(
        zip(inputs, model_prompts, results, strict=True), start=offset
    ):
        order = list(range(len(texts)))
        random.Random(seed + index).shuffle(order)  # shown in random order, reproducible from seed and index
        comparison = Comparison(
            prompt_id=prompt_id,
            input_text=input_text,
            model_prompt=model_prompt,
            model_version_id=loaded.version_id,
            task_revision_id=task.id,
            settings=settings | {"raw_distinct": len(set(raw)), "batch_size": size, "batch_index": index,
                                 "sampled_in": where},
            seed=seed,
            state="assigned" if user_id else "ready",
            user_id=user_id,
            assigned_at=utcnow() if user_id else None,
            shown_at=utcnow() if user_id else None,
        )
        comparison.candidates = [
            Candidate(position=pos, sample_index=idx, text=texts[idx]) for pos, idx in enumerate(order)
        ]
        db.session.add(comparison)
        comparisons.append(comparison)
    return comparisons


def active_reference(loaded):
    """The model the served version's implicit rewards are measured against: its lineage's starter, loaded beside
    it; None while the starter itself serves (every reward would be 0). Once per batch, not per input."""
    from app.versions.registry import root_ancestor

    served = db.session.get(ModelVersion, loaded.version_id) if loaded.version_id is not None else None
    root = root_ancestor(served) if served is not None else None
    if root is None or root.id == served.id:
        return None
    return get_holder(current_app).resident(root.id)


def check_typed_input(text) -> str:
    """A typed input, checked as the model will see it (characters, then tokens), so one it cannot take is refused
    in words before it counts against the annotator's typing limit."""
    from app.lm.sampling import InputTooLong, check_fits, input_limit, prompt_length

    clean = clean_text(text, field="prompt", max_chars=current_app.config["MAX_INPUT_CHARS"])
    loaded = get_holder(current_app._get_current_object()).current()
    settings = generation_settings()
    prompt = loaded.format_prompt(clean, system_prompt=current_task().system_prompt)
    try:
        check_fits(prompt_length(loaded, prompt), input_limit(loaded, max_new_tokens=settings["max_new_tokens"],
                                                              max_input_tokens=settings["max_input_tokens"]))
    except InputTooLong as exc:
        raise BadInput(str(exc), status=413) from exc
    return clean


def in_queue(prompt_id_column):
    """SQL: the pool input may be handed out (not removed, no open flag: see annotation.flags). Typed inputs, which
    have no prompt, always may."""
    removed = aliased(Prompt)  # its own name: with prompts outside too, the subquery would read every prompt
    return prompt_id_column.is_(None) | (
        ~exists().where(Flag.prompt_id == prompt_id_column, Flag.status == "open")
        & ~exists().where(removed.id == prompt_id_column, removed.removed_at.is_not(None))
    )


def next_pool_prompts(*, limit: int = 1) -> list[Prompt]:
    """The pool prompts with the fewest comparisons so far (oldest first among equals)."""
    open_count = (
        select(func.count(Comparison.id))
        .where(Comparison.prompt_id == Prompt.id, Comparison.state != "stale")
        .scalar_subquery()
    )
    prompts = list(db.session.scalars(select(Prompt).where(in_queue(Prompt.id))
                                      .order_by(open_count, Prompt.id).limit(limit)))
    if not prompts:
        raise PoolEmpty("the prompt pool is empty; import prompts first")
    return prompts


def create_comparison(*, user_id: int, input_text: str | None = None) -> Comparison:
    """Make a comparison for a typed input; else the user's pending one, or the next one from the pool.

    One open pool comparison per user: asking for the next without answering (a skip is an answer) hands back
    the same one, so nobody can claim the prefetched buffer or the pool faster than they answer."""
    if input_text is None and (pending := pending_comparison(user_id=user_id, pool_only=True)) is not None:
        return shown(load_comparison(pending.id))
    if input_text is not None:
        text = clean_text(input_text, field="prompt", max_chars=current_app.config["MAX_INPUT_CHARS"])
    refuse_if_busy(buffered=buffered_now if input_text is None else None)
    limit_generation(user_id=user_id)
    loaded = get_holder(current_app._get_current_object()).current()
    if input_text is not None:
        [comparison] = generate_comparisons(loaded=loaded, inputs=[(text, None)], user_id=user_id, waiting=True)
    else:
        comparison = (
            claim_overlap(user_id=user_id, overlap=current_app.config["ANNOTATION_OVERLAP"])
            or claim_gold_sometimes(user_id=user_id, rate=current_app.config["GOLD_RATE"])
            or claim_prefetched(user_id=user_id, version_id=loaded.version_id)
        )
        if comparison is not None:
            return comparison
        comparison = next_from_pool(user_id=user_id, loaded=loaded)
    db.session.commit()
    return comparison


def next_from_pool(*, user_id: int, loaded) -> Comparison:
    """Sample the next pool prompt for the user (not committed); or, when the prefetcher answers that the buffer
    has comparisons again, take one from there. Busy (503, Retry-After 1 s) if others took them first: this
    request has waited its turn once already, and a second hand-over would start a second full wait."""
    from app.versions.handoff import FromBuffer

    [prompt] = next_pool_prompts()
    try:
        [comparison] = generate_comparisons(loaded=loaded, inputs=[(prompt.text, prompt.id)], user_id=user_id,
                                            waiting=True, pool=True)
    except FromBuffer:
        comparison = claim_prefetched(user_id=user_id, version_id=loaded.version_id)
        if comparison is None:
            raise Busy("The model is busy: the comparisons ready for you were taken. Try again in 1 s.",
                       retry_after=1) from None
    return comparison


def pending_comparison(*, user_id: int, pool_only: bool = False) -> Comparison | None:
    """The user's newest unanswered comparison, so a reload resumes instead of resampling.

    pool_only: leave out typed inputs. "Next from the pool" hands back an open pool comparison, never a typed input
    the annotator left for another: those came back before any pool prompt."""
    stmt = (
        select(Comparison)
        .outerjoin(Preference, Preference.comparison_id == Comparison.id)
        .where(Comparison.user_id == user_id, Comparison.state == "assigned", Preference.id.is_(None))
    )
    if pool_only:
        stmt = stmt.where((Comparison.prompt_id.is_not(None)) | (Comparison.gold_item_id.is_not(None)))
    return db.session.scalars(stmt.order_by(Comparison.id.desc()).limit(1)).first()


def shown(comparison: Comparison) -> Comparison:
    """Record that the comparison is being shown now (the time its answer's latency counts from), and return it."""
    comparison.shown_at = utcnow()
    db.session.commit()
    return comparison


def claim_prefetched(*, user_id: int, version_id: int, revision: int | None = None) -> Comparison | None:
    """Atomically take one ready comparison of the serving version, rendered under the task revision in force
    (`revision`, else the newest, read in the same statement: a round trip less on every pool click)."""
    # Read to the end before writing: on SQLite a write begun while the read is still open must upgrade its
    # snapshot, and fails at once ("database is locked", no lock wait) when another process committed meanwhile,
    # as the prefetcher does with every refill (measured: 11-15 such 503s a minute at 20 annotators).
    ready = list(db.session.scalars(
        select(Comparison.id)
        .where(claimable(version_id=version_id, revision=revision))
        .order_by(Comparison.id)
        .limit(5)
    ))
    for candidate_id in ready:
        # Guarded update: two processes can race for the same row and only one wins.
        won = db.session.execute(
            update(Comparison)
            .where(Comparison.id == candidate_id, Comparison.state == "ready")
            .values(state="assigned", user_id=user_id, assigned_at=utcnow(), shown_at=utcnow())
        ).rowcount
        if won:
            db.session.commit()
            return load_comparison(candidate_id)
    if ready:
        # Every row was taken by others, but the guarded updates began a write transaction: end it now, or on
        # SQLite this request keeps the database's write lock while its comparison is sampled (or waits for the
        # prefetcher), and every other writer waits with it, answers included, until their 5 s lock wait fails.
        db.session.rollback()
    return None


def claim_overlap(*, user_id: int, overlap: int) -> Comparison | None:
    """A copy of a pool comparison another annotator holds or answered, while it has fewer than `overlap` answers.

    Served before a fresh comparison, so overlap completes early. The copy has the same candidates (and sample
    indices) in its own random order. The original's copy counter is raised by a guarded update in the same
    transaction as the insert, so k annotators asking at once make at most overlap - 1 copies."""
    if overlap <= 1:
        return None
    copy_of_mine = aliased(Comparison)
    roots = db.session.scalars(
        select(Comparison.id)
        .where(Comparison.root_id.is_(None), Comparison.gold_item_id.is_(None), Comparison.prompt_id.is_not(None),
               Comparison.state == "assigned", Comparison.user_id != user_id, Comparison.copies < overlap - 1,
               in_queue(Comparison.prompt_id),
               ~exists().where(copy_of_mine.root_id == Comparison.id, copy_of_mine.user_id == user_id))
        .order_by(Comparison.id)
        .limit(5)
    ).all()
    for root_id in roots:
        won = db.session.execute(
            update(Comparison).where(Comparison.id == root_id, Comparison.copies < overlap - 1)
            .values(copies=Comparison.copies + 1)
        ).rowcount
        if not won:
            db.session.rollback()
            continue
        root = load_comparison(root_id)
        order = list(range(len(root.candidates)))
        random.SystemRandom().shuffle(order)
        copy = Comparison(
            prompt_id=root.prompt_id, input_text=root.input_text, model_prompt=root.model_prompt,
            model_version_id=root.model_version_id, settings=root.settings | {"copy_of": root.id}, seed=root.seed,
            # The root's: its prompt (system prompt and all) was rendered under that revision, and the exports'
            # chat form must name the system prompt the candidates were written with.
            task_revision_id=root.task_revision_id,
            state="assigned", user_id=user_id, assigned_at=utcnow(), shown_at=utcnow(), root_id=root.id,
            candidates=[Candidate(position=pos, sample_index=root.candidates[i].sample_index,
                                  text=root.candidates[i].text) for pos, i in enumerate(order)],
        )
        db.session.add(copy)
        try:
            db.session.commit()
        except IntegrityError:
            db.session.rollback()  # a concurrent request of this user copied it first; the counter rolls back too
            continue
        return load_comparison(copy.id)
    return None


def claim_gold_sometimes(*, user_id: int, rate: float) -> Comparison | None:
    """With probability `rate`, a gold item's comparison for this annotator (annotation.gold), else None."""
    if rate <= 0 or random.random() >= rate:
        return None
    claimed = claim_gold(user_id=user_id)
    return load_comparison(claimed) if claimed else None


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
