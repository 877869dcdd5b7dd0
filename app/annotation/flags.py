"""Flags: an annotator reports a comparison (unclear, offensive, broken); its pool input waits for an admin, who
clears the flag or removes the input from the pool."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from app.annotation.comparisons import get_comparison
from app.platform.exceptions import BadInput
from app.platform.extensions import db
from app.platform.validation import clean_text
from app.tables import FLAG_REASONS, Comparison, Flag, Prompt, User, utcnow

MAX_COMMENT = 500


def flag_comparison(*, user_id: int, comparison_id: int, reason, comment=None) -> tuple[Flag, bool]:
    """Flag one of your comparisons; (flag, created). Flagging it again returns the first flag as it is."""
    comparison = get_comparison(comparison_id=comparison_id, user_id=user_id)
    if reason not in FLAG_REASONS:
        raise BadInput(f"reason must be one of {', '.join(FLAG_REASONS)}")
    empty = comment is None or (isinstance(comment, str) and not comment.strip())
    comment = "" if empty else clean_text(comment, field="comment", max_chars=MAX_COMMENT)
    existing = flag_of(user_id=user_id, comparison_id=comparison_id)
    if existing is not None:
        return existing, False
    flag = Flag(comparison_id=comparison.id, prompt_id=comparison.prompt_id, user_id=user_id, reason=reason,
                comment=comment)
    db.session.add(flag)
    try:
        db.session.commit()
    except IntegrityError:  # the same flag sent twice at once
        db.session.rollback()
        return flag_of(user_id=user_id, comparison_id=comparison_id), False
    if comparison.prompt_id is not None:
        retire_prompt_buffer(prompt_id=comparison.prompt_id)
    return flag, True


def flag_of(*, user_id: int, comparison_id: int) -> Flag | None:
    """The user's flag on a comparison, if any."""
    return db.session.scalars(select(Flag).where(Flag.user_id == user_id, Flag.comparison_id == comparison_id)).first()


def open_flags(*, limit: int = 200) -> list[tuple[Flag, str, str]]:
    """Open flags, oldest first, with the flagger's name and the comparison's input."""
    rows = db.session.execute(
        select(Flag, User.name, Comparison.input_text)
        .join(User, User.id == Flag.user_id).join(Comparison, Comparison.id == Flag.comparison_id)
        .where(Flag.status == "open").order_by(Flag.id).limit(limit)
    ).all()
    return [tuple(row) for row in rows]


def resolve_flag(*, flag_id: int, action, actor: str) -> Flag:
    """"clear": the input goes back in the queue; "remove_input": it leaves the pool for good. Every open flag on
    the same input is resolved with it. Audited."""
    from app.versions.registry import record_event

    if action not in ("clear", "remove_input"):
        raise BadInput('action must be "clear" or "remove_input"')
    flag = db.session.get(Flag, flag_id) if 1 <= flag_id <= 2**31 - 1 else None
    if flag is None:
        raise BadInput(f"flag {flag_id} not found", status=404)
    if flag.status != "open":
        raise BadInput(f"flag {flag_id} is already {flag.status}", status=409)
    status = "cleared" if action == "clear" else "removed"
    same = (Flag.prompt_id == flag.prompt_id) if flag.prompt_id is not None else (Flag.id == flag.id)
    db.session.execute(update(Flag).where(same, Flag.status == "open")
                       .values(status=status, resolved_by=actor, resolved_at=utcnow()))
    if action == "remove_input" and flag.prompt_id is not None:
        db.session.execute(update(Prompt).where(Prompt.id == flag.prompt_id).values(removed_at=utcnow()))
    record_event(actor=actor, action=f"flag_{status}", detail={"flag_id": flag.id, "prompt_id": flag.prompt_id,
                                                                "reason": flag.reason})
    db.session.refresh(flag)
    return flag


def retire_prompt_buffer(*, prompt_id: int) -> None:
    """Prefetched comparisons of a flagged input are not handed out while it waits for review."""
    db.session.execute(update(Comparison).where(Comparison.prompt_id == prompt_id, Comparison.state == "ready")
                       .values(state="stale"))
    db.session.commit()
