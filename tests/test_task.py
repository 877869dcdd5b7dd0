"""The task: revisions (save, restore, history), what comparisons record, the API, the CLI, and safe guidelines."""

from __future__ import annotations

import pytest

from app.annotation import task as tasks
from app.platform.exceptions import BadInput
from app.platform.extensions import db
from app.tables import Comparison, TaskRevision

NEW = {"question": "Which reply would you send?", "guidelines": "Pick the **kindest** reply.\n\n- short\n- warm",
       "system_prompt": "You answer customer emails."}


def test_a_fresh_install_starts_with_todays_text_as_revision_1(app):
    with app.app_context():
        task = tasks.current_task()
        assert task.id == 1 and task.question == "Which rewrite is best?" and task.author == "prefloop"
        assert "**is polite**" in task.guidelines and "**keeps the meaning**" in task.guidelines
        html = str(tasks.render_guidelines(task.guidelines))
        assert "<strong>is polite</strong>" in html and "<ol>" in html


def test_each_save_is_a_new_revision_and_a_restore_is_one_too(app):
    with app.app_context():
        saved = tasks.save_task(**NEW, author="adm")
        assert (saved.id, saved.author, saved.restored_from) == (2, "adm", None)
        assert tasks.current_task().question == NEW["question"]
        # The same text again adds nothing.
        assert tasks.save_task(**NEW, author="someone").id == 2
        restored = tasks.restore_task(revision=1, author="opr")
        assert (restored.id, restored.restored_from, restored.author) == (3, 1, "opr")
        assert tasks.current_task().question == "Which rewrite is best?"
        assert [r.id for r in tasks.list_revisions()] == [3, 2, 1]
        with pytest.raises(BadInput) as exc:
            tasks.restore_task(revision=99, author="opr")
        assert exc.value.status == 404


@pytest.mark.parametrize(("field", "value", "message"), [
    ("question", "", "question is empty"),
    ("question", "x" * 301, "the limit is 300"),
    ("guidelines", "a\x00b", "NUL"),
    ("guidelines", 7, "must be a string"),
    ("system_prompt", "s" * 4001, "the limit is 4000"),
])
def test_bad_text_is_refused_and_nothing_is_stored(app, field, value, message):
    with app.app_context():
        with pytest.raises(BadInput, match=message):
            tasks.save_task(**(NEW | {field: value}), author="adm")
        assert db.session.scalar(db.select(db.func.count(TaskRevision.id))) == 1


def test_comparisons_record_the_revision_and_a_save_retires_the_prefetched_ones(app, annotator):
    from app.annotation.comparisons import claim_prefetched, create_comparison, generate_comparisons
    from app.versions.serving import get_holder

    with app.app_context():
        first = create_comparison(user_id=annotator["id"], input_text="Send the report now.")
        assert first.task_revision_id == 1
        loaded = get_holder(app).current()
        generate_comparisons(loaded=loaded, inputs=[("Fix the build.", None)], user_id=None)
        db.session.commit()
        tasks.save_task(**NEW, author="adm")
        # Rendered under revision 1: never handed out under revision 2.
        assert claim_prefetched(user_id=annotator["id"], version_id=1, revision=2) is None
        state = db.select(Comparison.state).where(Comparison.input_text == "Fix the build.")
        assert db.session.scalar(state) == "stale"
        second = create_comparison(user_id=annotator["id"], input_text="Close the door.")
        assert second.task_revision_id == 2


def test_a_plain_model_ignores_the_system_prompt(app, annotator):
    """The starter is prompted with its template: the system prompt is for chat models only."""
    from app.annotation.comparisons import create_comparison

    with app.app_context():
        tasks.save_task(**NEW, author="adm")
        comparison = create_comparison(user_id=annotator["id"], input_text="Send the report now.")
        assert NEW["system_prompt"] not in comparison.model_prompt
        assert comparison.model_prompt.endswith("Polite:") and "Send the report now." in comparison.model_prompt


# Each of these once ran script somewhere: none may survive as markup.
ATTACKS = [
    "<script>alert(1)</script>",
    "[click](javascript:alert(1))",
    "[click](JaVaScRiPt:alert(1))",
    '<img src=x onerror="alert(1)">',
    "![x](x\" onerror=\"alert(1))",
    '<a href="#" onclick="alert(1)">x</a>',
    "<svg onload=alert(1)>",
    "<iframe src=javascript:alert(1)></iframe>",
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "<style>body{display:none}</style>",
]


def markup_of(html: str) -> list[tuple[str, list]]:
    """Every element and its attributes, as a browser's parser sees them (text stays text)."""
    from html.parser import HTMLParser

    found = []

    class Parser(HTMLParser):
        def handle_starttag(self, tag, attrs):
            found.append((tag, attrs))

    Parser().feed(html)
    return found


@pytest.mark.parametrize("attack", ATTACKS)
def test_guidelines_never_carry_script(attack):
    html = str(tasks.render_guidelines(f"Be kind.\n\n{attack}\n\n**ok**"))
    for tag, attrs in markup_of(html):
        assert tag in {"p", "strong", "em", "a", "img", "ul", "ol", "li", "code", "pre"}, html
        for name, value in attrs:
            assert not name.startswith("on"), html
            if name in ("href", "src"):
                assert value.split(":")[0].lower() in ("http", "https", "mailto") or ":" not in value, html
    assert "<strong>ok</strong>" in html


def test_links_and_images_that_are_fine_stay():
    html = str(tasks.render_guidelines("See [the guide](https://example.com/guide) and ![logo](https://example.com/l.png)"))
    assert '<a href="https://example.com/guide" rel="noopener noreferrer nofollow">the guide</a>' in html
    assert '<img src="https://example.com/l.png" alt="logo">' in html


# API ----------------------------------------------------------------------------------------------------------------


def test_api_any_role_reads_the_task_and_only_a_task_editor_writes_it(client, annotator, admin):
    res = client.get("/api/task", headers=annotator["headers"])
    assert res.status_code == 200
    assert set(res.json) == {"revision", "question", "guidelines", "system_prompt", "created_at", "author",
                             "restored_from"}
    assert res.json["revision"] == 1
    assert client.put("/api/task", json=NEW, headers=annotator["headers"]).status_code == 403
    assert client.get("/api/task").status_code == 401
    res = client.put("/api/task", json=NEW, headers=admin["headers"])
    assert res.status_code == 200 and res.json["revision"] == 2 and res.json["author"] == "adm"
    assert {k: res.json[k] for k in NEW} == NEW
    assert client.get("/api/task", headers=annotator["headers"]).json["revision"] == 2
    # The system prompt may be left out: none.
    res = client.put("/api/task", json={"question": "Best?", "guidelines": "Pick one."}, headers=admin["headers"])
    assert res.status_code == 200 and res.json["system_prompt"] == ""


@pytest.mark.parametrize("body", [{}, {"question": "Q"}, {"question": "Q", "guidelines": ""},
                                  {"question": "Q", "guidelines": "G", "extra": 1}, {"question": 1, "guidelines": "G"},
                                  [], {"question": "Q", "guidelines": "G" * 20001}])
def test_api_bad_task_bodies_are_clear_errors(client, admin, body):
    res = client.put("/api/task", json=body, headers=admin["headers"])
    assert res.status_code in (400, 413) and res.json["error"]
    assert client.get("/api/task", headers=admin["headers"]).json["revision"] == 1


def test_api_comparisons_name_their_revision(client, annotator, admin):
    res = client.post("/api/comparisons", json={"prompt": "Fix the build."}, headers=annotator["headers"])
    assert res.status_code == 201 and res.json["task_revision"] == 1


# CLI ----------------------------------------------------------------------------------------------------------------


def test_cli_shows_sets_lists_and_restores(app, runner, tmp_path):
    guidelines = tmp_path / "guidelines.md"
    guidelines.write_text(NEW["guidelines"], encoding="utf-8")
    out = runner.invoke(args=["task", "show"])
    assert out.exit_code == 0 and "revision 1" in out.output and "Which rewrite is best?" in out.output
    out = runner.invoke(args=["task", "set", "--question", NEW["question"], "--guidelines-file", str(guidelines),
                              "--system-prompt", NEW["system_prompt"]])
    assert out.exit_code == 0 and "task revision 2 is in force" in out.output, out.output
    with app.app_context():
        task = tasks.current_task()
        assert (task.question, task.guidelines, task.system_prompt, task.author) == (*NEW.values(), "cli")
    out = runner.invoke(args=["task", "set", "--question", "Only the question changes"])
    assert out.exit_code == 0
    with app.app_context():
        assert tasks.current_task().guidelines == NEW["guidelines"]
    assert runner.invoke(args=["task", "history"]).output.count("\n") == 3
    out = runner.invoke(args=["task", "restore", "1"])
    assert out.exit_code == 0 and "restored as revision 4" in out.output
    out = runner.invoke(args=["task", "set", "--question", ""])
    assert out.exit_code != 0 and "question is empty" in out.output
