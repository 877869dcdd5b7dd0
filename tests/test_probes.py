"""Probes: the probe set (drawn once, edited as revisions), samples made by the worker's code with a fixed seed per
input, the compare API's 409s until both versions' samples are ready, and the side-by-side page's word diff."""

from __future__ import annotations

import pytest

from app.platform.extensions import db
from app.tables import ProbeSamples
from app.versions import probes
from tests.conftest import install_child
from tests.services import BOTH_BACKENDS


def fill_samples(app, version_id: int) -> dict:
    """What the worker does for a version (worker/probes.py), in this process: the row's fields."""
    from worker.probes import sample_version

    with app.app_context():
        row = sample_version(version_id, actor="test")
        return {"status": row.status, "samples": row.samples, "revision_id": row.revision_id}


def test_word_diff():
    assert probes.word_diff("please send the file", "kindly send the file today") == [
        ("del", "please"), ("ins", "kindly"), ("same", "send the file"), ("ins", "today")]
    assert probes.word_diff("", "new words") == [("ins", "new words")]
    assert probes.word_diff("same", "same") == [("same", "same")]


@pytest.mark.parametrize("backend", BOTH_BACKENDS, indirect=True)
def test_probe_set_is_drawn_once_and_edited_as_revisions(app, client, users):
    admin, annotator = users.create("adm", "admin"), users.create("ann", "annotator")
    texts = [f"Send the report number {i} now." for i in range(40)]
    assert client.post("/api/prompts", json={"prompts": texts}, headers=admin["headers"]).status_code == 201
    assert client.get("/api/probes", headers=admin["headers"]).json == {"revision": None, "inputs": []}
    with app.app_context():
        first = probes.ensure_probes(actor="test")
        assert first.id == 1 and len(first.inputs) == 24 and set(first.inputs) <= set(texts)
        assert probes.ensure_probes(actor="test").id == 1  # frozen: drawn once
    res = client.put("/api/probes", json={"inputs": ["Fix it.", "Fix it.", " Call me. "]}, headers=admin["headers"])
    assert res.status_code == 200 and res.json == {"revision": 2, "inputs": ["Fix it.", "Call me."]}
    # Bad input is a clear 4xx and saves nothing.
    for body, status in [({"inputs": []}, 400), ({"inputs": ["ok", "bad\x00"]}, 400), ({"inputs": ["x" * 5000]}, 413),
                         ({"inputs": [f"p{i}" for i in range(101)]}, 413), ({"inputs": "Fix it."}, 400)]:
        res = client.put("/api/probes", json=body, headers=admin["headers"])
        assert res.status_code == status and res.json["error"], (body, res.json)
    assert client.put("/api/probes", json={"inputs": ["x"]}, headers=annotator["headers"]).status_code == 403
    with app.app_context():
        assert [r.id for r in probes.probe_revisions()] == [2, 1]  # kept
    assert client.get("/api/probes", headers=admin["headers"]).json["revision"] == 2


@pytest.mark.parametrize("backend", BOTH_BACKENDS, indirect=True)
def test_compare_answers_409_until_both_are_sampled(app, client, users, starter_dir):
    operator = users.create("opr", "operator")
    install_child(app, starter_dir["gpt2"], number=2, parent=1, activate=False)
    url = "/api/model-versions/compare?a=1&b=2"
    res = client.get(url, headers=operator["headers"])
    assert res.status_code == 409 and "no probe set" in res.json["error"]
    client.put("/api/probes", json={"inputs": ["send me the file", "where is my money"]}, headers=operator["headers"])
    res = client.get(url, headers=operator["headers"])
    assert res.status_code == 409 and "version 1 has no samples" in res.json["error"]
    # Without Redis the web cannot queue the job, and says so (it never samples probes itself).
    res = client.post("/api/model-versions/1/probes", headers=operator["headers"])
    assert res.status_code == 503 and "Redis" in res.json["error"]
    with app.app_context():
        assert db.session.query(ProbeSamples).one().status == "failed"
    first = fill_samples(app, 1)
    assert first["status"] == "ready" and [len(s["texts"]) for s in first["samples"]] == [3, 3]
    # The first draw is kept beside the candidates (whose duplicates were resampled): what diversity is measured on.
    assert all(len(s["raw"]) == 3 and set(s["raw"]) <= set(s["texts"]) for s in first["samples"])
    assert all(s["texts"][0] == s["raw"][0] for s in first["samples"])
    with app.app_context():
        db.session.add(ProbeSamples(version_id=2, revision_id=first["revision_id"], status="running"))
        db.session.commit()
    res = client.get(url, headers=operator["headers"])
    assert res.status_code == 409 and "version 2's probe samples are running" in res.json["error"]
    with app.app_context():
        db.session.query(ProbeSamples).filter_by(version_id=2).delete()
        db.session.commit()
    fill_samples(app, 2)
    body = client.get(url, headers=operator["headers"]).json
    assert body["revision"] == first["revision_id"]
    assert [p["input"] for p in body["probes"]] == ["send me the file", "where is my money"]
    # Version 2 is a copy of version 1: with a fixed seed per input, the same weights write the same samples.
    assert all(p["a"] == p["b"] and len(p["a"]) == 3 for p in body["probes"])
    for query in ("a=1", "a=x&b=2", "a=1&b=99", "a=0&b=1", "a=1&b=99999999999999"):
        res = client.get(f"/api/model-versions/compare?{query}", headers=operator["headers"])
        assert res.status_code in (400, 404) and res.json["error"], query


def test_side_by_side_page_marks_the_changed_words(app, client, users, starter_dir):
    from app.tables import ProbeRevision

    users.create("opr", "operator")
    install_child(app, starter_dir["gpt2"], number=2, parent=1, activate=False)
    with app.app_context():
        revision = ProbeRevision(inputs=["send the file"], author="test")
        db.session.add(revision)
        db.session.flush()
        db.session.add_all([
            ProbeSamples(version_id=1, revision_id=revision.id, status="ready",
                         samples=[{"input": "send the file", "texts": ["send it now", "file", "x"]}]),
            ProbeSamples(version_id=2, revision_id=revision.id, status="ready",
                         samples=[{"input": "send the file", "texts": ["please send it now", "file", "y"]}])])
        db.session.commit()
    users.login(client, "opr")
    page = client.get("/ops/versions/compare?a=1&b=2").get_data(as_text=True)
    assert "send the file" in page and "<ins>please</ins>" in page and "<del>x</del>" in page and "<ins>y</ins>" in page
    # Missing samples: the reason, and a button to have the worker make them.
    page = client.get("/ops/versions/compare?a=1&b=1").get_data(as_text=True)
    assert "side-by-side" in page
    install_child(app, starter_dir["gpt2"], number=3, parent=1, activate=False)
    page = client.get("/ops/versions/compare?a=1&b=3").get_data(as_text=True)
    assert "version 3 has no samples" in page and 'data-version="3"' in page
    assert client.get("/ops/versions/compare?a=zz&b=2").status_code == 200
