"""The per-annotator view: how much, how fast, how each one answers, and how well."""

from __future__ import annotations

import csv
import io


def post(client, path, user, body=None):
    return client.post(path, json=body if body is not None else {}, headers=user["headers"])


def test_annotators_counts_rates_latency_agreement_and_flags(app, client, admin, annotator, users):
    app.config.update(ANNOTATION_OVERLAP=2, GOLD_RATE=0.0, TYPED_PROMPT_LIMIT="100 per minute")
    other = users.create("=cmd", "annotator")  # a name a spreadsheet would run as a formula
    post(client, "/api/prompts", admin, {"prompts": ["Send me the report now.", "Close the door."]})
    # Both answer the same two pool comparisons (overlap 2): the same candidate on the first; a skip and an all-bad
    # on the second.
    for picks in ((0, 0), ("skip", "all_bad")):
        for person, pick in zip((annotator, other), picks, strict=True):
            comparison = post(client, "/api/comparisons", person).json
            body = {"latency_ms": 2000 if person is annotator else 4000}
            if pick == 0:  # copies list the same candidates in their own order: the same text is the same pick
                body["candidate_id"] = min(comparison["candidates"], key=lambda c: c["text"])["id"]
            else:
                body["verdict"] = pick
            assert post(client, f"/api/comparisons/{comparison['id']}/answer", person, body).status_code == 201
    typed = post(client, "/api/comparisons", annotator, {"prompt": "Fix it."}).json
    post(client, f"/api/comparisons/{typed['id']}/flag", annotator, {"reason": "broken"})

    res = client.get("/api/annotators", headers=admin["headers"])
    assert res.status_code == 200
    rows = {r["name"]: r for r in res.json["annotators"]}
    ann = rows["ann"]
    assert (ann["answers"], ann["answers_today"], ann["median_seconds"], ann["flags"]) == (2, 2, 2.0, 1)
    assert rows["=cmd"]["median_seconds"] == 4.0 and rows["=cmd"]["flags"] == 0
    assert ann["gold_accuracy"] is None and ann["agreement"] == 1.0  # skips say nothing about agreement
    assert (ann["skip_rate"], ann["all_bad_rate"]) == (0.5, 0.0)
    assert (rows["=cmd"]["skip_rate"], rows["=cmd"]["all_bad_rate"]) == (0.0, 0.5)
    assert client.get("/api/annotators", headers=annotator["headers"]).status_code == 403

    users.login(client, admin["name"])
    page = client.get("/admin/").get_data(as_text=True)
    assert 'id="team-table"' in page and 'data-annotator="ann"' in page
    download = client.get("/admin/annotators.csv")
    assert download.status_code == 200 and download.mimetype == "text/csv"
    table = {r["name"]: r for r in csv.DictReader(io.StringIO(download.get_data(as_text=True)))}
    assert set(table) == {"ann", "'=cmd"} and table["ann"]["answers"] == "2" and table["ann"]["gold_accuracy"] == ""
