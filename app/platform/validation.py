"""Input checks shared by views, the API and the CLI."""

from __future__ import annotations

import json
from collections.abc import Iterator

from app.platform.exceptions import BadInput


def clean_text(value, *, field: str, max_chars: int) -> str:
    """Return stripped text, or raise BadInput for empty, oversized, non-text, NUL- or surrogate-containing input."""
    if not isinstance(value, str):
        raise BadInput(f"{field} must be a string")
    text = value.strip()
    if not text:
        raise BadInput(f"{field} is empty")
    if len(text) > max_chars:
        raise BadInput(f"{field} is {len(text)} characters; the limit is {max_chars}", status=413)
    # PostgreSQL text cannot hold NUL, and no annotator means one: refuse it on every backend alike.
    if "\x00" in text:
        raise BadInput(f"{field} contains a NUL character")
    # A lone surrogate ("\ud800", which JSON allows) is no character: it cannot be stored or tokenized as UTF-8.
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise BadInput(f"{field} contains an unpaired surrogate, which is not text") from None
    return text


def upload_text(data: bytes, *, filename: str) -> str:
    """An uploaded file as text (UTF-8, a BOM allowed), or a BadInput naming the first bad byte."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadInput(f"{filename} is not UTF-8 text (byte {exc.start})") from exc


def jsonl_values(text: str, *, filename: str) -> Iterator[tuple[int, object]]:
    """(line number, parsed value) of every non-blank line of a JSONL file, or a BadInput naming the line."""
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BadInput(f"{filename} line {lineno}: not valid JSON ({exc.msg})") from exc
        except (ValueError, RecursionError) as exc:  # a number past Python's digit limit, or nesting too deep
            raise BadInput(f"{filename} line {lineno}: not usable JSON ({exc.__class__.__name__})") from exc
        yield lineno, value


def file_label(filename: str) -> str:
    """An uploaded file's name as the pool records its source: printable, and short enough for the column
    (a NUL in a name was a 500 on PostgreSQL, a long one overflowed it)."""
    name = "".join(c for c in filename if c.isprintable())
    return f"upload:{name[:100]}"
