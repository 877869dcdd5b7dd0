"""The task: the question above the candidates, the guidelines (Markdown) and a chat model's system prompt.

Each save adds a revision; the newest is in force. Comparisons record the revision they were shown under, and the
exports carry it, so a team can drop the clicks made under guidelines it has since changed.
"""

from __future__ import annotations

from functools import cache, lru_cache

from markupsafe import Markup
from sqlalchemy import select

from app.platform.exceptions import BadInput
from app.platform.extensions import db
from app.platform.validation import clean_text
from app.tables import TaskRevision

MAX_QUESTION = 300
MAX_GUIDELINES = 20_000
MAX_SYSTEM_PROMPT = 4_000


def current_task() -> TaskRevision:
    """The revision in force: the newest (revision 1 is written by the migration that made the table)."""
    task = db.session.scalars(select(TaskRevision).order_by(TaskRevision.id.desc()).limit(1)).first()
    if task is None:
        raise BadInput("the task has no revision; run `flask db upgrade`", status=503)
    return task


def current_revision_id() -> int:
    """The revision number in force, for a comparison to record."""
    return current_task().id


def list_revisions(*, limit: int = 50) -> list[TaskRevision]:
    """The newest revisions first."""
    return list(db.session.scalars(select(TaskRevision).order_by(TaskRevision.id.desc()).limit(limit)))


def get_revision(revision: int) -> TaskRevision:
    """One revision, or a 404."""
    task = db.session.get(TaskRevision, revision)
    if task is None:
        raise BadInput(f"task revision {revision} not found", status=404)
    return task


def save_task(*, question, guidelines, system_prompt="", author: str, restored_from: int | None = None
              ) -> TaskRevision:
    """Check the three texts and store them as a new revision, now in force.

    Saving the text in force again adds nothing: the current revision is returned as it is."""
    question = clean_text(question, field="question", max_chars=MAX_QUESTION)
    guidelines = clean_text(guidelines, field="guidelines", max_chars=MAX_GUIDELINES)
    # Optional: a plain (non-chat) model has no use for one.
    system_prompt = ("" if system_prompt is None or (isinstance(system_prompt, str) and not system_prompt.strip())
                     else clean_text(system_prompt, field="system_prompt", max_chars=MAX_SYSTEM_PROMPT))
    current = current_task()
    if (current.question, current.guidelines, current.system_prompt) == (question, guidelines, system_prompt):
        return current
    task = TaskRevision(question=question, guidelines=guidelines, system_prompt=system_prompt, author=author,
                        restored_from=restored_from)
    db.session.add(task)
    db.session.commit()
    retire_prefetched(revision=task.id)
    return task


def restore_task(*, revision: int, author: str) -> TaskRevision:
    """Make an earlier revision's text the task again, as a new revision that names it."""
    old = get_revision(revision)
    return save_task(question=old.question, guidelines=old.guidelines, system_prompt=old.system_prompt,
                     author=author, restored_from=old.id)


def retire_prefetched(*, revision: int) -> None:
    """Prefetched comparisons were rendered (system prompt and all) under the old text: never hand them out now."""
    from app.tables import ServingState
    from app.versions.buffer import retire_comparisons

    retire_comparisons(keep_version_id=ServingState.active_id(), keep_revision_id=revision)


def task_body(task: TaskRevision) -> dict:
    """The API's view of a revision."""
    return {"revision": task.id, "question": task.question, "guidelines": task.guidelines,
            "system_prompt": task.system_prompt, "created_at": task.created_at.isoformat(), "author": task.author,
            "restored_from": task.restored_from}


@lru_cache(maxsize=16)  # every page load shows the revision in force: render each text once
def render_guidelines(text: str) -> Markup:
    """Guidelines as safe HTML: Markdown with raw HTML off, then sanitised (links keep http(s) and mailto only)."""
    import nh3

    html = _markdown().render(text)
    return Markup(nh3.clean(html, url_schemes={"http", "https", "mailto"}, link_rel="noopener noreferrer nofollow"))


@cache
def _markdown():
    """CommonMark with tables and strikethrough, and raw HTML passed through as text, never as markup."""
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark", {"html": False, "linkify": False}).enable(["table", "strikethrough"])
