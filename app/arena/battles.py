"""The arena: blind battles between two versions on one input, votes, and the leaderboard they add up to."""

from __future__ import annotations

import random
from datetime import timedelta

from flask import current_app
from sqlalchemy import func, select, update
from sqlalchemy.orm import joinedload

from app.accounts.security import limit_generation
from app.annotation.comparisons import generation_settings, refuse_if_busy, waiting_bound
from app.annotation.task import current_task
from app.arena.matchups import battle_pair, battle_pairs
from app.arena.ratings import fit_length_controlled, leaderboard, pair_counts
from app.platform.exceptions import BadInput, PoolEmpty
from app.platform.extensions import db
from app.platform.validation import clean_text
from app.tables import ArenaBattle, ArenaCandidate, Prompt, utcnow
from app.versions.buffer import retire_ready
from app.versions.serving import get_holder

# The prefetcher keeps battles ready only while someone battled this recently: an idle arena costs nothing.
IN_USE = timedelta(minutes=10)


def generate_battles(*, holder, pair: tuple[int, int], inputs: list[tuple[str, int | None]],
                     user_id: int | None, waiting: bool = False) -> list[ArenaBattle]:
    """One candidate per version for each (input, pool prompt id), each version sampled in one batched call.

    Each version samples with its own seed (the call's seed plus its place in the pair): with one shared seed two
    similar versions would write the same text more often than chance. Left and right are drawn per battle from
    the call's seed, so they are random but reproducible. Each version's call is batched with the other requests
    of this process waiting for the same model (the batch's seed, this call's offset and the batch size are kept
    per version, which reproduce its samples); `waiting`: someone waits for it, so it is refused (Busy) as a
    comparison would be."""
    from app.lm.sampling import InputTooLong, sample_coalesced

    settings = generation_settings() | {"n": 1}
    seed = random.SystemRandom().randrange(2**31)
    sampled, batches = {}, {}
    system_prompt = current_task().system_prompt
    for place, version_id in enumerate(pair):
        loaded = holder.resident(version_id)
        prompts = [loaded.format_prompt(text, system_prompt=system_prompt) for text, _ in inputs]
        try:
            results, batch_seed, offset, size = sample_coalesced(loaded, model_prompts=prompts, seed=seed + place,
                                                                 **waiting_bound(waiting), **settings)
        except InputTooLong as exc:
            raise BadInput(str(exc), status=413) from exc
        batches[str(version_id)] = {"seed": batch_seed, "offset": offset, "size": size}
        sampled[version_id] = [(prompt, texts[0]) for prompt, (texts, _) in zip(prompts, results, strict=True)]
    battles = []
    for index, (text, prompt_id) in enumerate(inputs):
        order = list(pair)
        random.Random(seed + index).shuffle(order)
        battle = ArenaBattle(prompt_id=prompt_id, input_text=text,
                             settings=settings | {"batch_index": index, "batches": batches}, seed=seed,
                             state="assigned" if user_id else "ready", user_id=user_id,
                             assigned_at=utcnow() if user_id else None)
        battle.candidates = [ArenaCandidate(position=pos, version_id=vid, model_prompt=sampled[vid][index][0],
                                            text=sampled[vid][index][1]) for pos, vid in enumerate(order)]
        db.session.add(battle)
        battles.append(battle)
    return battles


def pool_inputs(*, limit: int) -> list[tuple[str, int]]:
    """Pool prompts drawn at random: a fixed order (fewest battles first) would offer the same prompt again and
    again when it cannot be sampled (too long for a version's template), and the arena would be stuck on it."""
    rows = db.session.execute(select(Prompt.text, Prompt.id).order_by(func.random()).limit(limit)).all()
    if not rows:

        raise PoolEmpty("the prompt pool is empty; import prompts first, or type a prompt")
    return [tuple(row) for row in rows]


def claim_ready(*, user_id: int, pairs: list[tuple[int, int]]) -> ArenaBattle | None:
    """Atomically take one prefetched battle of a current pair, or None."""
    retire_ready(pairs=pairs)
    for battle in ready_battles(pairs=pairs, limit=20):
        won = db.session.execute(
            update(ArenaBattle).where(ArenaBattle.id == battle.id, ArenaBattle.state == "ready")
            .values(state="assigned", user_id=user_id, assigned_at=utcnow())
        ).rowcount
        db.session.commit()
        if won:
            return load_battle(battle.id)
    return None


def ready_battles(*, pairs: list[tuple[int, int]], limit: int) -> list[ArenaBattle]:
    """Prefetched battles of the current pairs among the `limit` oldest ready ones."""
    ready = db.session.scalars(
        select(ArenaBattle).options(joinedload(ArenaBattle.candidates))
        .where(ArenaBattle.state == "ready").order_by(ArenaBattle.id).limit(limit)
    ).unique().all()
    return [b for b in ready if battle_pair(b) in pairs]


def create_battle(*, user_id: int, input_text: str | None = None) -> ArenaBattle:
    """A battle on a typed input; else the user's unvoted one, a prefetched one, or a new one on a pool prompt."""
    if input_text is None and (pending := pending_battle(user_id=user_id)) is not None:
        return pending
    pairs = battle_pairs()
    if not pairs:
        raise BadInput("no versions to compare yet: the active version has no parent; an operator can choose a "
                       "pair on the versions page", 409)
    if input_text is not None:
        inputs = [(clean_text(input_text, field="prompt", max_chars=current_app.config["MAX_INPUT_CHARS"]), None)]
    # Before the budget is spent: a refused request costs the annotator nothing.
    refuse_if_busy(buffered=None if input_text is not None else lambda: bool(ready_battles(pairs=pairs, limit=50)))
    limit_generation(user_id=user_id)
    if input_text is None:
        if (battle := claim_ready(user_id=user_id, pairs=pairs)) is not None:
            return battle
        inputs = pool_inputs(limit=1)
    holder = get_holder(current_app._get_current_object())
    [battle] = generate_battles(holder=holder, pair=random.choice(pairs), inputs=inputs, user_id=user_id,
                                waiting=True)
    db.session.commit()
    return load_battle(battle.id)


def load_battle(battle_id: int) -> ArenaBattle | None:
    """A battle with its two candidates."""
    return db.session.scalars(select(ArenaBattle).options(joinedload(ArenaBattle.candidates))
                              .where(ArenaBattle.id == battle_id)).unique().one_or_none()


def pending_battle(*, user_id: int) -> ArenaBattle | None:
    """The user's newest unvoted battle, so a reload resumes it."""
    battle_id = db.session.scalar(
        select(ArenaBattle.id).where(ArenaBattle.user_id == user_id, ArenaBattle.state == "assigned",
                                     ArenaBattle.verdict.is_(None)).order_by(ArenaBattle.id.desc()).limit(1))
    return load_battle(battle_id) if battle_id else None


def get_battle(*, battle_id: int, user_id: int | None = None) -> ArenaBattle:
    """A battle; with user_id, only one assigned to that user (anything else is a plain 404)."""
    battle = load_battle(battle_id)
    if battle is None or (user_id is not None and battle.user_id != user_id):
        raise BadInput(f"battle {battle_id} not found", status=404)
    return battle


def record_vote(*, user_id: int, battle_id: int, candidate_id: int | None, verdict: str | None,
                latency_ms: int | None = None) -> tuple[ArenaBattle, bool]:
    """Store a vote once; (battle, created). The same vote again is a no-op, a different one a 409."""
    battle = get_battle(battle_id=battle_id, user_id=user_id)
    if candidate_id is not None and candidate_id not in {c.id for c in battle.candidates}:
        raise BadInput(f"candidate {candidate_id} is not part of battle {battle_id}", status=422)
    verdict = "choice" if candidate_id is not None else verdict
    # Guarded: of two concurrent votes on one battle exactly one is stored.
    won = db.session.execute(
        update(ArenaBattle).where(ArenaBattle.id == battle_id, ArenaBattle.verdict.is_(None))
        .values(verdict=verdict, winner_candidate_id=candidate_id, latency_ms=latency_ms, voted_at=utcnow())
    ).rowcount
    db.session.commit()
    battle = load_battle(battle_id)
    if won:
        return battle, True
    if battle.verdict == verdict and battle.winner_candidate_id == candidate_id:
        return battle, False
    raise BadInput(f"battle {battle_id} already has a different vote", status=409)


def votes_by(*, user_id: int) -> int:
    """How many battles the user voted on."""
    return db.session.scalar(select(func.count(ArenaBattle.id)).where(ArenaBattle.user_id == user_id,
                                                                      ArenaBattle.verdict.is_not(None))) or 0


def outcomes(*, with_lengths: bool = False, versions: tuple[int, int] | None = None) -> list[tuple]:
    """Every vote as (left version, right version, "a" | "b" | "tie" | "both_bad") for app.arena.ratings; with
    with_lengths, (…, (left words, right words)) appended; with versions, only the battles of that pair."""
    left, right = ArenaCandidate.__table__.alias("left_c"), ArenaCandidate.__table__.alias("right_c")
    texts = (left.c.text, right.c.text) if with_lengths else ()
    stmt = (
        select(left.c.version_id, right.c.version_id, ArenaBattle.verdict, ArenaBattle.winner_candidate_id,
               left.c.id, *texts)
        .join(left, (left.c.battle_id == ArenaBattle.id) & (left.c.position == 0))
        .join(right, (right.c.battle_id == ArenaBattle.id) & (right.c.position == 1))
        .where(ArenaBattle.verdict.is_not(None))
    )
    if versions is not None:
        stmt = stmt.where(left.c.version_id.in_(versions), right.c.version_id.in_(versions))
    out = []
    for a, b, verdict, winner, left_id, *words in db.session.execute(stmt.order_by(ArenaBattle.id)).all():
        vote = (a, b, ("a" if winner == left_id else "b") if verdict == "choice" else verdict)
        out.append((*vote, tuple(len(t.split()) for t in words)) if with_lengths else vote)
    return out


_STANDINGS: dict = {}  # this process's last leaderboard, by the votes it was computed from


def standings() -> dict:
    """The leaderboard (Bradley-Terry ratings with bootstrap intervals, plain and controlled for the answers' length
    in words) and win/tie/loss per pair of versions.

    Computed again only when the votes changed (their count and newest vote time): the bootstrap refits the model
    ARENA_BOOTSTRAP_ROUNDS times, which a page view should not pay for each time."""
    key = db.session.execute(select(func.count(ArenaBattle.id), func.max(ArenaBattle.voted_at))
                             .where(ArenaBattle.verdict.is_not(None))).one()
    key = (tuple(key), current_app.config["ARENA_BOOTSTRAP_ROUNDS"])
    if _STANDINGS.get("key") != key:
        rows = outcomes(with_lengths=True)
        battles, lengths = [r[:3] for r in rows], [r[3] for r in rows]
        rounds = current_app.config["ARENA_BOOTSTRAP_ROUNDS"]
        _STANDINGS.update(key=key, value={
            "versions": leaderboard(battles, rounds=rounds, lengths=lengths),
            "length_coefficient": round(fit_length_controlled(battles, lengths)[1], 3) if battles else None,
            "pairs": pair_counts(battles), "votes": len(battles)})
    return _STANDINGS["value"]


def in_use() -> bool:
    """Whether anyone was handed a battle lately (the prefetcher fills the arena buffer only then)."""
    latest = db.session.scalar(select(func.max(ArenaBattle.assigned_at)))
    return latest is not None and utcnow() - latest < IN_USE
