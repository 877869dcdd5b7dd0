"""Gold items: comparisons with a known answer, imported by admins, mixed into queues, scored per annotator."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random

from sqlalchemy import exists, func, select
from sqlalchemy.exc import IntegrityError

from app.annotation.task import current_revision_id
from app.platform.database import add_all_new
from app.platform.exceptions import BadInput
from app.platform.extensions import db
from app.platform.validation import clean_text, jsonl_values, upload_text
from app.tables import GOLD_VERDICTS, Candidate, Comparison, GoldItem, Preference, User, utcnow

FORMAT = ('each item: a prompt, its candidates, and "expected": the number of the best candidate counting from 1, '
          f'or one of {", ".join(GOLD_VERDICTS)}')


def parse_gold_file(*, data: bytes, filename: str) -> list[dict]:
    """Rows of {prompt, candidates, expected} from JSONL or CSV (columns prompt, candidate_1.., expected)."""
    text = upload_text(data, filename=filename)
    name = filename.lower()
    if name.endswith((".jsonl", ".ndjson")):
        rows = []
        for lineno, row in jsonl_values(text, filename=filename):
            if not isinstance(row, dict):
                raise BadInput(f"{filename} line {lineno}: expected an object; {FORMAT}")
            rows.append({"prompt": row.get("prompt"), "candidates": row.get("candidates"),
                         "expected": row.get("expected")})
        return rows
    if name.endswith(".csv"):
        try:
            table = list(csv.reader(io.StringIO(text)))
        except csv.Error as exc:  # e.g. a field over the csv module's size limit
            raise BadInput(f"{filename}: not a readable CSV file ({exc})") from exc
        if not table:
            return []
        header = [h.strip().lower() for h in table[0]]
        columns = [i for i, h in enumerate(header) if h.startswith("candidate")]
        if "prompt" not in header or "expected" not in header or not columns:
            raise BadInput(f"{filename}: the header needs prompt, candidate_1, candidate_2, ... and expected")
        p, e = header.index("prompt"), header.index("expected")
        return [{"prompt": r[p] if p < len(r) else "", "expected": r[e] if e < len(r) else "",
                 "candidates": [r[i] for i in columns if i < len(r) and r[i].strip()]}
                for r in table[1:] if any(cell.strip() for cell in r)]
    raise BadInput(f"{filename}: use a .csv or .jsonl file")


def clean_item(row: dict, *, number: int, candidates: int, max_chars: int) -> tuple[str, list[str], str]:
    """(prompt, candidates, expected as stored) of one row, or a BadInput naming the row."""
    where = f"gold item #{number}"
    prompt = clean_text(row.get("prompt"), field=f"{where}: prompt", max_chars=max_chars)
    texts = row.get("candidates")
    # As many candidates as a real comparison shows: a gold item must not stand out by its shape.
    if not isinstance(texts, list) or len(texts) != candidates:
        raise BadInput(f"{where}: needs exactly {candidates} candidates (NUM_CANDIDATES); {FORMAT}")
    texts = [clean_text(t, field=f"{where}: candidate {i + 1}", max_chars=max_chars) for i, t in enumerate(texts)]
    if len(set(texts)) != len(texts):
        raise BadInput(f"{where}: two candidates are the same text")
    expected = row.get("expected")
    if isinstance(expected, str) and expected.strip().lower() in GOLD_VERDICTS:
        return prompt, texts, expected.strip().lower()
    # isdecimal, not isdigit ("²" is a digit int() refuses), and short: a long run of digits is no candidate number.
    if isinstance(expected, str) and expected.strip().isdecimal() and len(expected.strip()) <= 3:
        expected = int(expected.strip())
    if type(expected) is not int or not 1 <= expected <= candidates:
        shown = repr(row.get("expected"))
        shown = shown if len(shown) <= 40 else shown[:37] + "..."
        raise BadInput(f"{where}: expected is {shown}; it must be a number from 1 to {candidates} (the best "
                       f"candidate) or one of {', '.join(GOLD_VERDICTS)}")
    return prompt, texts, str(expected - 1)


def import_gold(*, rows: list[dict], source: str, candidates: int, max_chars: int) -> dict:
    """Check every row first, then add the new items in one transaction; returns counts."""
    if not rows:
        raise BadInput(f"no gold items given; {FORMAT}")
    cleaned: dict[str, tuple[str, list[str], str]] = {}
    for number, row in enumerate(rows, 1):
        prompt, texts, expected = clean_item(row, number=number, candidates=candidates, max_chars=max_chars)
        digest = hashlib.sha256(json.dumps([prompt, texts]).encode()).hexdigest()
        cleaned.setdefault(digest, (prompt, texts, expected))
    existing = set(db.session.scalars(select(GoldItem.item_hash).where(GoldItem.item_hash.in_(list(cleaned)))))
    new = [GoldItem(input_text=p, candidates=t, expected=e, item_hash=h, source=source[:128])
           for h, (p, t, e) in cleaned.items() if h not in existing]
    add_all_new(new, what="gold items")
    return {"imported": len(new), "duplicates": len(rows) - len(new)}


def gold_accuracy() -> dict:
    """Each annotator's answers on gold items and how many matched the expected answer (skips do not count)."""
    chosen = Candidate.__table__.alias("chosen")
    rows = db.session.execute(
        select(User.name, GoldItem.expected, Preference.verdict, chosen.c.sample_index)
        .join(Comparison, Comparison.id == Preference.comparison_id)
        .join(GoldItem, GoldItem.id == Comparison.gold_item_id)
        .join(User, User.id == Preference.user_id)
        .outerjoin(chosen, chosen.c.id == Preference.chosen_candidate_id)
        .where(Preference.verdict != "skip")
    ).all()
    per: dict[str, list[int]] = {}
    for name, expected, verdict, index in rows:
        answer = str(index) if verdict == "choice" else verdict
        counts = per.setdefault(name, [0, 0])
        counts[0] += 1
        counts[1] += answer == expected
    items = db.session.scalar(select(func.count(GoldItem.id))) or 0
    return {"items": items, "annotators": [
        {"annotator": name, "answered": n, "correct": ok, "accuracy": ok / n} for name, (n, ok) in sorted(per.items())
    ]}


def claim_gold(*, user_id: int) -> int | None:
    """Assign this annotator a new comparison of a gold item they have not been shown; its id, or None."""
    shown = exists().where(Comparison.gold_item_id == GoldItem.id, Comparison.user_id == user_id)
    item = db.session.scalars(select(GoldItem).where(~shown).order_by(func.random()).limit(1)).first()
    if item is None:
        return None
    order = list(range(len(item.candidates)))
    random.SystemRandom().shuffle(order)
    comparison = Comparison(
        prompt_id=None, input_text=item.input_text, model_prompt=item.input_text, model_version_id=None,
        settings={"gold": True}, seed=0, state="assigned", user_id=user_id, assigned_at=utcnow(), shown_at=utcnow(),
        gold_item_id=item.id, task_revision_id=current_revision_id(),
        candidates=[Candidate(position=pos, sample_index=i, text=item.candidates[i]) for pos, i in enumerate(order)],
    )
    db.session.add(comparison)
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()  # the same annotator's concurrent request took this item first
        return None
    return comparison.id
