"""Prompt files: CSV and JSONL parse, bad files say why and import nothing."""

import pytest

from app.annotation.prompts import parse_prompt_file
from app.platform.exceptions import BadInput
from tests.services import BOTH_BACKENDS


def test_csv_with_prompt_column():
    data = b"id,prompt\n1,Send it now.\n2,\"Fix it, idiot.\"\n"
    assert parse_prompt_file(data=data, filename="p.csv") == ["Send it now.", "Fix it, idiot."]


def test_csv_without_header_uses_first_column():
    assert parse_prompt_file(data=b"Send it now.\nFix it.\n", filename="p.csv") == ["Send it now.", "Fix it."]


def test_jsonl_objects_and_strings():
    data = b'{"prompt": "a"}\n\n"b"\n{"text": "c"}\n'
    assert parse_prompt_file(data=data, filename="p.jsonl") == ["a", "b", "c"]


@pytest.mark.parametrize("data,name,message", [
    (b'{"prompt": "a"}\n{broken\n', "p.jsonl", "line 2"),
    (b'{"other": 1}\n', "p.jsonl", "line 1"),
    (b"\xff\xfe", "p.csv", "not UTF-8"),
    (b"a", "p.xlsx", ".csv or .jsonl"),
])
def test_bad_files(data, name, message):
    with pytest.raises(BadInput, match=message):
        parse_prompt_file(data=data, filename=name)


def test_cli_import(app, runner, tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text('{"prompt": "Send me the report now."}\n{"prompt": "Fix this bug today."}\n')
    res = runner.invoke(args=["prompts", "import", str(f)])
    assert res.exit_code == 0 and "imported 2" in res.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"prompt": ""}\n')
    res = runner.invoke(args=["prompts", "import", str(bad)])
    assert res.exit_code == 2 and "prompt #2" in res.output


@pytest.mark.parametrize("backend", BOTH_BACKENDS)
def test_a_concurrent_import_of_the_same_prompts_is_a_409_and_keeps_nothing(app, monkeypatch):
    """Another request stores one of these prompts between this import's duplicate check and its commit: the unique
    hash refuses the commit, the answer says why (409), and none of this import's prompts are kept."""
    import hashlib

    from sqlalchemy import event, func, select

    from app.annotation import prompts
    from app.platform.extensions import db
    from app.tables import Prompt

    with app.app_context():
        raced = []

        def racing_insert(session, _context, _instances):
            if raced:
                return
            raced.append(True)
            with db.engine.begin() as conn:  # its own connection and transaction, as another request's
                conn.execute(Prompt.__table__.insert().values(text="Two.", source="other",
                                                              text_hash=hashlib.sha256(b"Two.").hexdigest()))

        event.listen(db.session.registry(), "before_flush", racing_insert)
        with pytest.raises(BadInput, match="at the same time") as caught:
            prompts.import_prompts(texts=["One.", "Two.", "Three."], source="test", max_chars=200)
        event.remove(db.session.registry(), "before_flush", racing_insert)
        assert raced and caught.value.status == 409
        assert db.session.scalar(select(func.count(Prompt.id))) == 1  # only the other request's
