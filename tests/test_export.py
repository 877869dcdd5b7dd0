"""Exports in every format: what each row holds, that `datasets` loads it, and that TRL trains a step on it."""

from __future__ import annotations

from datetime import datetime

import pytest

from app.annotation.answers import record_answer
from app.annotation.comparisons import generate_comparisons
from app.platform.extensions import db
from app.tables import User
from app.versions.serving import get_holder

# (input, answer, also fine): the index picked, or a verdict.
ANSWERS = [("Fix the bug now.", 0, [1]), ("Sign it.", "tie", []), ("Print the notes now.", 2, []),
           ("Call me back.", "all_bad", []), ("Move the car.", "skip", [])]


@pytest.fixture
def answered(app, annotator):
    """Five answered comparisons of the starter: a choice with one also fine, a tie, a choice, all bad, a skip."""
    with app.app_context():
        loaded = get_holder(app).current()
        out = []
        for text, answer, also in ANSWERS:
            [c] = generate_comparisons(loaded=loaded, inputs=[(text, None)], user_id=annotator["id"])
            db.session.commit()
            texts = [x.text for x in c.candidates]
            if isinstance(answer, int):
                record_answer(user_id=annotator["id"], comparison_id=c.id, candidate_id=c.candidates[answer].id,
                              verdict="choice", latency_ms=1234, also_good=[c.candidates[i].id for i in also])
            else:
                record_answer(user_id=annotator["id"], comparison_id=c.id, candidate_id=None, verdict=answer,
                              latency_ms=1234)
            out.append({"id": c.id, "texts": texts, "answer": answer, "also": also, "prompt": c.model_prompt})
        pseudonym = db.session.get(User, annotator["id"]).pseudonym
    return {"comparisons": out, "pseudonym": pseudonym}


def export(runner, tmp_path, fmt: str) -> str:
    out = tmp_path / f"export.{'parquet' if fmt == 'parquet' else 'jsonl'}"
    res = runner.invoke(args=["preferences", "export", str(out), "--format", fmt])
    assert res.exit_code == 0, res.output
    return str(out)


def load(path: str):
    from datasets import load_dataset

    return load_dataset("parquet" if path.endswith(".parquet") else "json", data_files=path, split="train")


def check_metadata(row: dict, answered: dict) -> None:
    """Every row says which comparison, who (as a pseudonym), which version and task revision, when and how fast."""
    assert row["comparison_id"] in {c["id"] for c in answered["comparisons"]}
    assert row["annotator"] == answered["pseudonym"] and row["annotator"].startswith("a-")
    assert row["model_version_id"] == 1 and row["task_revision"] == 1 and row["latency_ms"] == 1234
    datetime.fromisoformat(row["answered_at"])


def test_trl_rows_are_the_pairs_with_their_metadata(runner, tmp_path, answered):
    ds = load(export(runner, tmp_path, "trl"))
    by = {c["id"]: c for c in answered["comparisons"]}
    # The choice with one also fine: both good ones against the third; the plain choice: two pairs.
    assert len(ds) == 4
    assert {r["comparison_id"] for r in ds} == {cid for cid, c in by.items() if isinstance(c["answer"], int)}
    for row in ds:
        check_metadata(row, answered)
        c = by[row["comparison_id"]]
        good = {c["texts"][i] for i in [c["answer"], *c["also"]]}
        assert row["prompt"] == c["prompt"] and row["chosen"].strip() in good and row["rejected"].strip() not in good
    assert "ann" not in {v for row in ds for v in row.values()}  # the name never leaves


def test_trl_chat_rows_are_message_lists_with_the_system_prompt(app, runner, tmp_path, answered):
    from app.annotation.task import current_task

    with app.app_context():
        system = current_task().system_prompt
    ds = load(export(runner, tmp_path, "trl-chat"))
    assert len(ds) == 4
    for row in ds:
        check_metadata(row, answered)
        assert row["prompt"] == [{"role": "system", "content": system}, {"role": "user", "content": row["input"]}]
        assert [m["role"] for m in row["chosen"]] == [m["role"] for m in row["rejected"]] == ["assistant"]
        assert row["chosen"][0]["content"] != row["rejected"][0]["content"]


def test_kto_rows_label_every_candidate_and_all_bad_is_all_false(runner, tmp_path, answered):
    ds = load(export(runner, tmp_path, "kto"))
    by = {c["id"]: c for c in answered["comparisons"]}
    labels: dict[int, list[bool]] = {}
    for row in ds:
        check_metadata(row, answered)
        labels.setdefault(row["comparison_id"], []).append(row["label"])
        assert row["completion"].strip() in by[row["comparison_id"]]["texts"]
    answers = {c["answer"]: c["id"] for c in answered["comparisons"]}
    assert sorted(labels[answers[0]]) == [False, True, True]  # the pick and the one also fine
    assert sorted(labels[answers[2]]) == [False, False, True]
    assert labels[answers["all_bad"]] == [False, False, False]
    assert answers["tie"] not in labels and answers["skip"] not in labels  # ties and skips give none
    assert len(ds) == 9


def test_parquet_holds_the_trl_rows(runner, tmp_path, answered):
    trl = load(export(runner, tmp_path, "trl"))
    pq = load(export(runner, tmp_path, "parquet"))
    assert pq.to_list() == trl.to_list()


def test_an_empty_parquet_export_is_still_a_file_with_its_columns(runner, tmp_path):
    """(datasets refuses any empty split, JSON or Parquet; pyarrow reads the file.)"""
    import pyarrow.parquet as pq

    table = pq.read_table(export(runner, tmp_path, "parquet"))
    assert table.num_rows == 0
    assert {"prompt", "chosen", "rejected", "annotator", "task_revision"} <= set(table.column_names)


@pytest.mark.parametrize(("fmt", "media", "kind"), [("trl", "application/x-ndjson", "json"),
                                                    ("trl-chat", "application/x-ndjson", "json"),
                                                    ("kto", "application/x-ndjson", "json"),
                                                    ("parquet", "application/vnd.apache.parquet", "parquet")])
def test_the_api_serves_every_format(client, admin, answered, tmp_path, fmt, media, kind):
    res = client.get(f"/api/preferences/export?format={fmt}", headers=admin["headers"])
    assert res.status_code == 200 and res.mimetype == media
    assert "attachment; filename=preferences" in res.headers["Content-Disposition"]
    path = tmp_path / f"api.{kind}l" if kind == "json" else tmp_path / "api.parquet"
    path.write_bytes(res.data)
    assert len(load(str(path))) == {"kto": 9}.get(fmt, 4)


@pytest.mark.parametrize("fmt", ["csv", "", "TRL", "trl;rm", "x" * 500])
def test_an_unknown_format_is_a_clear_400(client, admin, fmt):
    res = client.get("/api/preferences/export", query_string={"format": fmt}, headers=admin["headers"])
    assert res.status_code == 400 and "unknown export format" in res.json["error"]


@pytest.mark.slow
def test_trl_trains_a_step_on_each_export(runner, tmp_path, answered, starter_dir, chat_dir):
    """DPOTrainer on the trl rows and the Parquet file (the starter) and on the trl-chat rows (the starter with a chat
    template), and KTOTrainer on the kto rows: each accepts the file as exported and runs one optimizer step."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer

    from app.lm.checkpoint import ensure_pad_token
    from app.lm.device import training_precision

    common = dict(max_steps=1, per_device_train_batch_size=2, report_to="none", save_strategy="no",
                  gradient_checkpointing=False, max_length=128, **training_precision())
    for fmt, model_dir in (("trl", starter_dir["gpt2"]), ("parquet", starter_dir["gpt2"]), ("trl-chat", chat_dir)):
        tokenizer = ensure_pad_token(AutoTokenizer.from_pretrained(model_dir))
        trainer = DPOTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir),
                             ref_model=AutoModelForCausalLM.from_pretrained(model_dir),
                             args=DPOConfig(output_dir=str(tmp_path / fmt), **common), processing_class=tokenizer,
                             train_dataset=load(export(runner, tmp_path, fmt)))
        assert trainer.train().global_step == 1
    model_dir = starter_dir["gpt2"]
    trainer = KTOTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir),
                         ref_model=AutoModelForCausalLM.from_pretrained(model_dir),
                         args=KTOConfig(output_dir=str(tmp_path / "kto"), **common),
                         processing_class=ensure_pad_token(AutoTokenizer.from_pretrained(model_dir)),
                         train_dataset=load(export(runner, tmp_path, "kto")))
    assert trainer.train().global_step == 1
