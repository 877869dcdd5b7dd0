"""Turning clicks into pairs, and the export ML engineers load with `datasets`."""

import json

import pytest

from app.comparisons import generate_comparisons
from app.extensions import db
from app.preferences import build_pairs, choice_preferences, record_answer
from app.serving import get_holder
from app.users import create_user


@pytest.fixture
def answered(app):
    """Three comparisons: one choice, one tie, one choice again."""
    with app.app_context():
        user, _, _ = create_user(name="u", role="admin")
        loaded = get_holder(app).current()
        out = []
        for text, answer in (("Fix the bug now.", 0), ("Sign it.", "tie"), ("Print the notes now.", 2)):
            [c] = generate_comparisons(loaded=loaded, inputs=[(text, None)], user_id=user.id)
            db.session.commit()
            if answer == "tie":
                record_answer(user_id=user.id, comparison_id=c.id, candidate_id=None, verdict="tie")
            else:
                record_answer(user_id=user.id, comparison_id=c.id, candidate_id=c.candidates[answer].id,
                              verdict="choice")
            out.append((c.id, [x.text for x in c.candidates], answer))
        return out


def test_two_pairs_per_choice_none_for_tie(app, answered):
    with app.app_context():
        pairs = list(build_pairs(choice_preferences()))
    assert len(pairs) == 4
    for cid, texts, answer in answered:
        mine = [p for p in pairs if p["comparison_id"] == cid]
        if answer == "tie":
            assert mine == []
        else:
            assert {p["chosen"] for p in mine} == {" " + texts[answer]}
            assert {p["rejected"] for p in mine} == {" " + t for i, t in enumerate(texts) if i != answer}


def test_cli_export_loads_with_datasets(app, answered, runner, tmp_path):
    from datasets import load_dataset

    out = tmp_path / "prefs.jsonl"
    res = runner.invoke(args=["preferences", "export", str(out)])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    ds = load_dataset("json", data_files=str(out), split="train")
    assert len(ds) == len(rows) == 4
    assert {"prompt", "chosen", "rejected"} <= set(ds.column_names)
    assert ds[0]["prompt"].startswith("Rewrite politely: ") and ds[0]["chosen"].startswith(" ")
    assert all(r["chosen"] != r["rejected"] for r in ds)
