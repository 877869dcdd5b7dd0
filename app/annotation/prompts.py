"""The prompt pool: import from CSV, JSONL or a list, without duplicates or half-imports."""

from __future__ import annotations

import csv
import hashlib
import io

from sqlalchemy import select

from app.platform.database import add_all_new
from app.platform.exceptions import BadInput
from app.platform.extensions import db
from app.platform.validation import clean_text, jsonl_values, upload_text
from app.tables import Prompt


def parse_prompt_file(*, data: bytes, filename: str) -> list[str]:
    """Read prompts from CSV (a `prompt` or `text` column, else the first) or JSONL (`prompt`/`text` or a string)."""
    text = upload_text(data, filename=filename)
    name = filename.lower()
    if name.endswith((".jsonl", ".ndjson", ".json")):
        out = []
        for lineno, row in jsonl_values(text, filename=filename):
            value = row if isinstance(row, str) else None
            if isinstance(row, dict):
                value = row.get("prompt", row.get("text"))
            if value is None:
                raise BadInput(f"{filename} line {lineno}: expected a string or an object with 'prompt'")
            out.append(value)
        return out
    if name.endswith((".csv", ".txt", ".tsv")):
        try:
            rows = list(csv.reader(io.StringIO(text), delimiter="\t" if name.endswith(".tsv") else ","))
        except csv.Error as exc:  # e.g. a field over the csv module's size limit
            raise BadInput(f"{filename}: not a readable CSV file ({exc})") from exc
        if not rows:
            return []
        header = [h.strip().lower() for h in rows[0]]
        for key in ("prompt", "text"):
            if key in header:
                col = header.index(key)
                return [r[col] for r in rows[1:] if len(r) > col]
        return [r[0] for r in rows if r]
    raise BadInput(f"{filename}: use a .csv or .jsonl file")


def import_prompts(*, texts: list, source: str, max_chars: int) -> dict:
    """Validate every prompt first, then add the new ones in one transaction; returns counts."""
    if not isinstance(texts, list):
        raise BadInput("prompts must be a list of strings")
    if not texts:
        raise BadInput("no prompts given")
    cleaned: dict[str, str] = {}
    for i, value in enumerate(texts):
        try:
            text = clean_text(value, field="prompt", max_chars=max_chars)
        except BadInput as exc:
            raise BadInput(f"prompt #{i + 1}: {exc}", status=exc.status) from exc
        cleaned.setdefault(hashlib.sha256(text.encode()).hexdigest(), text)
    existing = set(db.session.scalars(select(Prompt.text_hash).where(Prompt.text_hash.in_(list(cleaned)))))
    new = [Prompt(text=t, text_hash=h, source=source[:128]) for h, t in cleaned.items() if h not in existing]
    add_all_new(new, what="prompts")
    return {"imported": len(new), "duplicates": len(texts) - len(new)}
