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
