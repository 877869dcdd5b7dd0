"""Gold items: import from JSONL and CSV (all or nothing), mixed into queues, scored, never exported."""

from __future__ import annotations

import json
import re

import pytest

GOLD = [
    {"prompt": "Send me the file now.", "candidates": ["Could you send me the file?", "File. Now.", "Idiot."],
     "expected": 1},
    {"prompt": "Fix the bug today.", "candidates": ["Please fix it today.", "Please fix the bug today.", "No."],
     "expected": "tie"},
]


def upload(client, users, admin, name: str, data: bytes):
    users.login(client, admin["name"])
    page = client.get("/admin/").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    import io

    res = client.post("/admin/gold", data={"csrf_token": token, "file": (io.BytesIO(data), name)},
                      content_type="multipart/form-data", follow_redirects=True)
    return res.get_data(as_text=True)


def gold_count(app) -> int:
    from app.platform.extensions import db
    from app.tables import GoldItem

    with app.app_context():
        return db.session.query(GoldItem).count()


def test_jsonl_and_csv_import_without_duplicates(app, client, users, admin):
    jsonl = "\n".join(json.dumps(row) for row in GOLD).encode()
    assert "Imported 2 gold items (0 already there)" in upload(client, users, admin, "gold.jsonl", jsonl)
    csv = (b"prompt,candidate_1,candidate_2,candidate_3,expected\n"
           b"Send me the file now.,Could you send me the file?,File. Now.,Idiot.,1\n"
           b"\"Close it, now.\",Please close it.,Close.,Shut up.,all_bad\n")
    assert "Imported 1 gold items (1 already there)" in upload(client, users, admin, "gold.csv", csv)
    assert gold_count(app) == 3


@pytest.mark.parametrize(("row", "message"), [
    ({"prompt": "Hi.", "candidates": ["a", "b"], "expected": 1}, "exactly 3 candidates"),
    ({"prompt": "Hi.", "candidates": ["a", "b", "c"], "expected": 4}, "expected is 4; it must be a number from 1 to 3"),
    ({"prompt": "Hi.", "candidates": ["a", "b", "c"], "expected": "best"}, "expected is &#39;best&#39;; it must be"),
    ({"prompt": "", "candidates": ["a", "b", "c"], "expected": 1}, "prompt is empty"),
    ({"prompt": "Hi.", "candidates": ["a", "a", "c"], "expected": 1}, "two candidates are the same"),
    ({"prompt": "Hi.", "candidates": ["a", 5, "c"], "expected": 1}, "must be a string"),
    ({"prompt": "Hi.", "candidates": ["a", "b", "c"], "expected": "²"}, "it must be a number from 1 to 3"),
    ({"prompt": "Hi.", "candidates": ["a", "b", "c"], "expected": "1" * 5000}, "expected is &#39;" + "1" * 36 + "..."),
])
def test_a_bad_row_imports_nothing_and_says_which(app, client, users, admin, row, message):
    data = (json.dumps(GOLD[0]) + "\n" + json.dumps(row)).encode()
    page = upload(client, users, admin, "gold.jsonl", data)
    assert "No gold items imported" in page and "gold item #2" in page and message in page
    assert gold_count(app) == 0


def test_gold_is_mixed_in_scored_and_never_exported(app, client, users, admin, annotator):
    from app.annotation.gold import gold_accuracy, import_gold

    with app.app_context():
        import_gold(rows=GOLD, source="test", candidates=3, max_chars=200)
    client.post("/api/prompts", json={"prompts": ["Water the plants."]}, headers=admin["headers"])
    app.config["GOLD_RATE"] = 1.0  # every pool comparison is a gold item while unseen ones remain
    shown = []
    for _ in range(3):
        c = client.post("/api/comparisons", json={}, headers=annotator["headers"]).json
        shown.append(c["prompt"])
        if c["prompt"] == GOLD[0]["prompt"]:  # right: the first candidate of the file
            pick = next(x["id"] for x in c["candidates"] if x["text"] == GOLD[0]["candidates"][0])
            body = {"candidate_id": pick}
        elif c["prompt"] == GOLD[1]["prompt"]:  # wrong: the file says tie
            body = {"candidate_id": c["candidates"][0]["id"]}
        else:
            body = {"candidate_id": c["candidates"][0]["id"]}
        assert client.post(f"/api/comparisons/{c['id']}/answer", json=body,
                           headers=annotator["headers"]).status_code == 201
    # Both gold items first, each once, in a comparison that looks like any other; then the pool.
    assert sorted(shown[:2]) == sorted(g["prompt"] for g in GOLD) and shown[2] == "Water the plants."
    with app.app_context():
        assert gold_accuracy() == {"items": 2, "annotators": [
            {"annotator": "ann", "answered": 2, "correct": 1, "accuracy": 0.5}]}
    exported = client.get("/api/preferences/export", headers=admin["headers"]).get_data(as_text=True)
    inputs = {json.loads(line)["input"] for line in exported.splitlines()}
    assert inputs <= {"Water the plants."}
    report = client.get("/api/agreement", headers=admin["headers"]).json
    assert report["gold"]["annotators"][0]["correct"] == 1


@pytest.mark.parametrize(("name", "data", "message"), [
    ("gold.jsonl", b'{"expected": ' + b"1" * 5000 + b"}", "line 1: not usable JSON"),
    ("gold.jsonl", b"[" * 100_000, "line 1: not"),
    ("gold.csv", b"prompt,candidate_1,candidate_2,candidate_3,expected\n" + b"x" * 200_000 + b",a,b,c,1\n",
     "not a readable CSV file"),
    ("gold.jsonl", b"\xff\xfe", "is not UTF-8 text"),
])
def test_unreadable_files_are_clear_errors(app, client, users, admin, name, data, message):
    page = upload(client, users, admin, name, data)
    assert "No gold items imported" in page and message in page
    assert gold_count(app) == 0
