"""Exports: the clicks (or the arena's votes) in the formats TRL and `datasets` read, streamed in constant memory.

Formats of the clicks (every row also has the click's metadata: comparison, pseudonymous annotator, model version,
task revision, answered-at, latency):
- trl: TRL's standard preference rows {prompt, chosen, rejected}, the pairs of build_pairs (the default);
- trl-chat: the same pairs in TRL's conversational form, prompt, chosen and rejected as message lists;
- kto: TRL's unpaired {prompt, completion, label}: every candidate of every answered comparison, picked and
  "also fine" true, the rest false; "all bad" makes all three false; ties and skips give none;
- parquet: the trl rows as one Parquet file (`datasets.load_dataset("parquet", data_files=...)`).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterator

from flask import current_app, has_app_context
from sqlalchemy import select

from app.dataset.clicks import BATCH, Click, arena_votes, choice_preferences
from app.dataset.pairs import build_pairs, kto_rows
from app.platform.exceptions import BadInput
from app.platform.extensions import db
from app.tables import TaskRevision, User

FORMATS = ("trl", "trl-chat", "kto", "parquet")
# Download name and media type of each format.
FILES = {"trl": ("preferences.jsonl", "application/x-ndjson"),
         "trl-chat": ("preferences-chat.jsonl", "application/x-ndjson"),
         "kto": ("preferences-kto.jsonl", "application/x-ndjson"),
         "parquet": ("preferences.parquet", "application/vnd.apache.parquet")}
CHUNK = 64 * 1024  # bytes per piece of a streamed Parquet file


def check_format(name: str) -> str:
    """The format, or a clear 400 naming the ones there are."""
    if name not in FORMATS:
        raise BadInput(f"unknown export format {name!r}; one of {', '.join(FORMATS)}")
    return name


def export_lines(*, arena: bool = False, fmt: str = "trl") -> Iterator[str]:
    """JSON lines of one format (arena votes: TRL pairs with both versions), in constant memory."""
    beat = _heartbeat()
    rows = build_pairs(arena_votes()) if arena else export_rows(fmt=fmt)
    for n, row in enumerate(rows):
        if n % BATCH == 0:
            beat()
        yield json.dumps(row, ensure_ascii=False) + "\n"


def export_rows(*, fmt: str = "trl") -> Iterator[dict]:
    """The rows of a JSON format (parquet holds the trl rows), each with its click's metadata."""
    check_format(fmt)
    # Users and revisions are few: read once, so each row needs no lookup.
    pseudonyms = dict(db.session.execute(select(User.id, User.pseudonym)).all())
    system_prompts = dict(db.session.execute(select(TaskRevision.id, TaskRevision.system_prompt)).all())
    verdicts = ("choice", "all_bad") if fmt == "kto" else ("choice",)
    for click in choice_preferences(verdicts=verdicts):
        meta = click_metadata(click, pseudonyms)
        if fmt == "kto":
            yield from (row | meta for row in kto_rows(click))
            continue
        for pair in build_pairs([click]):
            row = {k: pair[k] for k in ("prompt", "chosen", "rejected", "input")} | meta
            if fmt == "trl-chat":
                row |= chat_messages(pair, system_prompts.get(click.task_revision) or "")
            yield row


def click_metadata(click: Click, pseudonyms: dict[int, str]) -> dict:
    """What every exported row says about its click; the annotator as their pseudonym, never their name."""
    return {"comparison_id": click.comparison_id, "preference_id": click.preference_id,
            "annotator": pseudonyms.get(click.user_id), "model_version_id": click.model_version_id,
            "task_revision": click.task_revision, "answered_at": click.answered_at, "latency_ms": click.latency_ms}


def chat_messages(pair: dict, system_prompt: str) -> dict:
    """A pair in TRL's conversational form: the input as the user's message (after the system prompt it was shown
    with), each completion as the assistant's."""
    prompt = ([{"role": "system", "content": system_prompt}] if system_prompt else []) + [
        {"role": "user", "content": pair["input"]}]
    return {"prompt": prompt, "chosen": [{"role": "assistant", "content": pair["chosen"].strip()}],
            "rejected": [{"role": "assistant", "content": pair["rejected"].strip()}]}


def parquet_schema():
    """The columns of the Parquet export, typed up front so an empty or all-null column still has a type."""
    import pyarrow as pa

    return pa.schema([("prompt", pa.string()), ("chosen", pa.string()), ("rejected", pa.string()),
                      ("input", pa.string()), ("comparison_id", pa.int64()), ("preference_id", pa.int64()),
                      ("annotator", pa.string()), ("model_version_id", pa.int64()), ("task_revision", pa.int64()),
                      ("answered_at", pa.string()), ("latency_ms", pa.int64())])


def write_parquet(out) -> int:
    """Write the trl rows as Parquet to a path or binary file, BATCH rows at a time; how many rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    beat, schema, n, batch = _heartbeat(), parquet_schema(), 0, []
    with pq.ParquetWriter(out, schema) as writer:
        for row in export_rows(fmt="trl"):
            batch.append(row)
            if len(batch) == BATCH:
                writer.write_table(pa.Table.from_pylist(batch, schema=schema))
                n, batch = n + len(batch), []
                beat()
        if batch:  # with no rows at all, the file still has the schema (and no row group)
            writer.write_table(pa.Table.from_pylist(batch, schema=schema))
    return n + len(batch)


def parquet_chunks() -> Iterator[bytes]:
    """The Parquet export as pieces of bytes: written to a temporary file first (Parquet's footer comes last, so it
    cannot be streamed as it is made), then read back, so memory stays one batch and one piece.

    The file has no name (TemporaryFile): a worker killed mid-download leaves nothing behind; and the liveness
    call goes on while the pieces go out, as while the rows are written."""
    beat = _heartbeat()
    with tempfile.TemporaryFile(prefix="prefloop-export-") as f:
        write_parquet(f)
        f.seek(0)
        while piece := f.read(CHUNK):
            beat()
            yield piece


def _heartbeat() -> Callable[[], None]:
    """The web server's liveness call (gunicorn's worker notify, see app/gunicorn_conf.py), else a no-op.

    A sync worker tells gunicorn's master it is alive only between requests, so an export longer than the
    `timeout` was killed midway, after its 200 had gone out; calling this while rows keep coming prevents that."""
    beat = current_app.extensions.get("prefloop_heartbeat") if has_app_context() else None
    return beat or (lambda: None)
