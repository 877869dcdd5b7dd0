"""Prompt files: CSV and JSONL parse, bad files say why and import nothing."""

import pytest

from app.annotation.prompts import parse_prompt_file
from app.platform.exceptions import BadInput


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
