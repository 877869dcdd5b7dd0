"""The versions page: each version's gate evidence, held-out accuracy and distinct with its standard error."""

import shutil
from pathlib import Path

from app.lm.checkpoint import read_manifest


def test_versions_page_shows_accuracy_and_distinct_with_its_error(app, client, users, operator, starter_dir):
    from app.versions.registry import register_version

    folder = Path(app.config["MODEL_STORE"]) / "2"
    shutil.copytree(Path(app.config["MODEL_STORE"]) / "1", folder)
    metrics = {"accuracy_candidate": 0.8125, "accuracy_parent": 0.5, "distinct_candidate": 2.6134,
               "distinct_se_candidate": 0.0412, "samples_per_prompt": 12, "passed": True, "reasons": []}
    with app.app_context():
        register_version(number=2, path=folder, manifest=read_manifest(folder) | {"parent_version": 1},
                         metrics=metrics)
    users.login(client, "opr")
    page = client.get("/ops/versions").get_data(as_text=True)
    row = page[page.index('data-version="2"'):]
    row = row[: row.index("</tr>")]
    assert "0.81" in row and "(parent 0.50)" in row
    assert "2.61 ± 0.04" in row and "12 samples per input" in row


def test_the_audit_log_filters_by_kind_and_the_arena_pair_defaults_to_two_versions(app, client, users, operator,
                                                                                    starter_dir):
    """Version changes by default, annotators' undos and arena pairs on request; the arena's second version
    defaults to the active version's parent, not to the active one again."""
    import re

    from app.versions.registry import record_event
    from tests.conftest import install_child

    install_child(app, starter_dir["gpt2"], number=2, parent=1)  # active now, activated (an audit row)
    with app.app_context():
        record_event(actor="ann", action="undo_answer", detail={"comparison_id": 7})
        record_event(actor="opr", action="arena_pair_added", detail={"versions": [1, 2]})
    users.login(client, operator["name"])

    def actions(query: str = "") -> set[str]:
        page = client.get(f"/ops/versions{query}").get_data(as_text=True)
        table = page[page.index('id="audit"'):]
        return set(re.findall(r"<tr><td>[^<]*</td><td>[^<]*</td><td>(\w+)</td>", table))

    assert "undo_answer" not in actions() and "activate" in actions()
    assert actions("?audit=annotation") == {"undo_answer"}
    assert actions("?audit=arena") == {"arena_pair_added"}
    assert {"undo_answer", "arena_pair_added", "activate"} <= actions("?audit=all")
    assert "undo_answer" not in actions("?audit=<script>")
    page = client.get("/ops/versions").get_data(as_text=True)
    second = page[page.index('name="b"'):]
    second = second[:second.index("</select>")]
    assert re.search(r'<option value="1" selected>1</option>', second), second


def test_the_agreement_table_says_why_it_is_empty_under_overlap_1(app, client, users, admin, annotator):
    """Answers stored, overlap 1: the table says there is nothing to agree on, not "No answers yet"."""
    client.post("/api/prompts", json={"prompts": ["Fix it."]}, headers=admin["headers"])
    app.config["GOLD_RATE"] = 0.0
    comparison = client.post("/api/comparisons", json={}, headers=annotator["headers"]).json
    client.post(f"/api/comparisons/{comparison['id']}/answer", json={"verdict": "tie"}, headers=annotator["headers"])
    users.login(client, admin["name"])
    page = client.get("/admin/").get_data(as_text=True)
    assert "No answers yet." not in page
    assert "1 answer, but no comparison has two: with ANNOTATION_OVERLAP=1 each is answered once" in page


def test_undos_cannot_push_the_version_history_out_and_the_log_pages(app, client, users, operator, admin, annotator):
    """110 undo rows after one activation: the versions page still shows the activation (version changes are their
    own view), every kind pages, and GET /api/audit serves it."""
    from app.versions.registry import activate_version, record_event

    with app.app_context():
        activate_version(version_id=1, actor="opr", reason="again")
        for i in range(110):
            record_event(actor="ann", action="undo_answer", detail={"comparison_id": i})
    users.login(client, operator["name"])
    page = client.get("/ops/versions").get_data(as_text=True)
    assert "again" in page and "undo_answer" not in page[page.index('id="audit"'):]
    page = client.get("/ops/versions?audit=annotation").get_data(as_text=True)
    assert "110 events · page 1 of 2" in page and 'id="audit-older"' in page
    page = client.get("/ops/versions?audit=annotation&page=2").get_data(as_text=True)
    assert "page 2 of 2" in page and page.count("<td>undo_answer</td>") == 10
    assert client.get("/ops/versions?page=abc").status_code == 200
    res = client.get("/api/audit?kind=annotation&limit=5&offset=105", headers=admin["headers"])
    assert res.status_code == 200 and res.json["total"] == 110 and len(res.json["events"]) == 5
    assert {e["action"] for e in res.json["events"]} == {"undo_answer"}
    versions = client.get("/api/audit?kind=versions", headers=admin["headers"]).json
    assert [e["reason"] for e in versions["events"]][:1] == ["again"]
    for bad in ("kind=everything", "limit=0", "limit=501", "offset=-1"):
        assert client.get(f"/api/audit?{bad}", headers=admin["headers"]).status_code == 400, bad
    assert client.get("/api/audit", headers=annotator["headers"]).status_code == 403
