"""Turning clicks into pairs, and the export ML engineers load with `datasets`."""

import json

import pytest

from app.accounts.users import create_user
from app.annotation.answers import record_answer
from app.annotation.comparisons import generate_comparisons
from app.dataset.clicks import choice_preferences
from app.dataset.pairs import build_pairs
from app.platform.extensions import db
from app.tables import Preference
from app.versions.serving import get_holder


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


def test_export_is_one_query_however_many_clicks(app, answered):
    """The export streams one joined query in batches, after one read each of the users' pseudonyms and the task
    revisions: no query per click (it used to be two per click)."""
    from sqlalchemy import event

    from app.dataset.export import export_lines
    from bench.export import insert_clicks

    def statements() -> tuple[int, int]:
        seen = []
        with app.app_context():
            listener = lambda *args: seen.append(args[2])  # noqa: E731 - (conn, cursor, statement, ...)
            event.listen(db.engine, "before_cursor_execute", listener)
            try:
                lines = sum(1 for _ in export_lines())
            finally:
                event.remove(db.engine, "before_cursor_execute", listener)
        return lines, len(seen)

    few = statements()
    with app.app_context():
        user_id = db.session.scalar(db.select(db.func.min(Preference.user_id)))
    insert_clicks(app.config["SQLALCHEMY_DATABASE_URI"], 2500, user_id=user_id)
    many = statements()
    assert few[0] == 4 and many[0] == 4 + 2 * 2500
    assert few[1] == many[1] == 3, (few, many)


def test_a_snapshot_is_a_bound_on_the_clicks(app, answered):
    """Clicks newer than a run's bound are not in its data; a run queued with a list of ids still reads it."""
    from app.dataset.snapshot import snapshot_clicks, take_snapshot
    from bench.export import insert_clicks

    with app.app_context():
        snapshot, digest = take_snapshot()
        ids = [c.preference_id for c in choice_preferences()]
        assert snapshot == {"max_preference_id": max(ids), "overlap_pairs": "each", "clicks": 2, "pairs": 4}
        assert len(digest) == 64
        user_id = db.session.scalar(db.select(Preference.user_id).limit(1))
    insert_clicks(app.config["SQLALCHEMY_DATABASE_URI"], 1, user_id=user_id)
    with app.app_context():
        assert len(list(build_pairs(snapshot_clicks(snapshot)))) == 4
        assert len(list(build_pairs(choice_preferences()))) == 6


@pytest.mark.slow
def test_a_long_export_is_not_cut_off_by_gunicorns_timeout(tmp_path, starter_dir):
    """Real gunicorn with a 1 s worker timeout: an export that streams for three times that completes, every
    line of it, and no worker is killed (it used to be, silently, after its 200 had gone out)."""
    import re
    import time
    import urllib.request

    from bench.export import insert_clicks
    from harness.live import live_server

    clicks = 200_000  # 100k took 2.8-3.5 s through gunicorn here: twice that keeps it well past three timeouts
    with live_server(tmp_path=tmp_path, starter_path=starter_dir["gpt2"], users={"adm": "admin"}, prompts=0,
                     env_extra={"PREFETCH_SIZE": "0"}, gunicorn_args=("--timeout", "1")) as srv:
        insert_clicks(srv.db_url, clicks, user_id=1)
        req = urllib.request.Request(srv.url("/api/preferences/export"),
                                     headers={"Authorization": f"Bearer {srv.users['adm']['token']}"})
        started = time.monotonic()
        with urllib.request.urlopen(req, timeout=300) as res:
            lines = sum(1 for _ in res)
        took = time.monotonic() - started
        assert lines == 2 * clicks, srv.log_tail()
        assert took > 3, f"the export took {took:.1f} s: too quick to prove anything about a 1 s timeout"
        assert not re.search(r"WORKER TIMEOUT|Worker .* was sent", srv.log_tail(200)), srv.log_tail()


def test_progress_is_exact_for_the_user_and_caches_the_shared_counts(app, answered):
    """Another process's clicks show in the shared totals after PROGRESS_CACHE_SECONDS (or at once when fresh);
    the user's own count is always exact."""
    from app.annotation.answers import progress
    from bench.export import insert_clicks

    with app.app_context():
        user_id = db.session.scalar(db.select(Preference.user_id).limit(1))
        other, _, _ = create_user(name="other", role="annotator")
        other_id = other.id
        assert progress(user_id=user_id) == {"mine": 3, "total": 3, "pool": 0, "pool_answered": 0, "remaining": 0}
    insert_clicks(app.config["SQLALCHEMY_DATABASE_URI"], 2, user_id=other_id)  # as another web process would
    with app.app_context():
        cached = progress(user_id=user_id)
        assert cached == {"mine": 3, "total": 3, "pool": 0, "pool_answered": 0, "remaining": 0}
        assert progress(user_id=other_id)["mine"] == 2  # exact, while the total is still cached
        assert progress(user_id=user_id, fresh=True)["total"] == 5
        app.config["PROGRESS_CACHE_SECONDS"] = 0
        insert_clicks(app.config["SQLALCHEMY_DATABASE_URI"], 1, user_id=other_id)
        assert progress(user_id=other_id) == {"mine": 3, "total": 6, "pool": 0, "pool_answered": 0, "remaining": 0}


def click(chosen: int, also_good: tuple[int, ...] = (), texts=("a", "b", "c")):
    from app.dataset.clicks import Click

    return Click(7, 7, "Rewrite politely: x", "x", 1, chosen, tuple(enumerate(texts, start=1)), also_good=also_good)


def test_candidates_marked_also_good_are_never_rejected():
    """The best and each also-good candidate beat the rest; nothing beats an acceptable one."""
    def pairs_of(c):
        return [(p["chosen"].strip(), p["rejected"].strip()) for p in build_pairs([c])]

    assert pairs_of(click(1)) == [("a", "b"), ("a", "c")]
    assert pairs_of(click(1, (2,))) == [("a", "c"), ("b", "c")]
    assert pairs_of(click(2, (1, 3))) == []  # every candidate acceptable: as a tie, no pair
    assert pairs_of(click(1, texts=("a", "a", "c"))) == [("a", "c")]  # a duplicate of the best is no worse
    assert pairs_of(click(1, (3,), texts=("a", "c", "c"))) == []


def test_also_good_is_stored_checked_and_part_of_the_answer(app, answered):
    from app.platform.exceptions import BadInput

    with app.app_context():
        user_id = db.session.scalars(db.select(Preference.user_id)).first()
        loaded = get_holder(app).current()
        [c] = generate_comparisons(loaded=loaded, inputs=[("Wash the car.", None)], user_id=user_id)
        db.session.commit()
        ids = [x.id for x in c.candidates]
        for bad in ([ids[0]], [10**12], [-1]):  # the chosen one itself, unknown ids
            with pytest.raises(BadInput):
                record_answer(user_id=user_id, comparison_id=c.id, candidate_id=ids[0], verdict="choice",
                              also_good=bad)
        with pytest.raises(BadInput):
            record_answer(user_id=user_id, comparison_id=c.id, candidate_id=None, verdict="tie", also_good=[ids[1]])
        assert db.session.scalars(db.select(Preference).where(Preference.comparison_id == c.id)).first() is None
        pref, created = record_answer(user_id=user_id, comparison_id=c.id, candidate_id=ids[0], verdict="choice",
                                      also_good=[ids[2], ids[2]])
        assert created and pref.also_good == [ids[2]]
        assert record_answer(user_id=user_id, comparison_id=c.id, candidate_id=ids[0], verdict="choice",
                             also_good=[ids[2]]) == (pref, False)
        with pytest.raises(BadInput) as err:
            record_answer(user_id=user_id, comparison_id=c.id, candidate_id=ids[0], verdict="choice")
        assert err.value.status == 409
        mine = [p for p in build_pairs(choice_preferences()) if p["comparison_id"] == c.id]
        texts = [x.text for x in c.candidates]
    good = {" " + texts[0], " " + texts[2]}
    assert all(p["chosen"] in good and p["rejected"] not in good for p in mine)
    assert len(mine) == (2 if texts[1] not in (texts[0], texts[2]) else 0)


def test_majority_keeps_the_pick_most_overlapping_answers_agree_on(app):
    """OVERLAP_PAIRS=majority: three annotators per comparison. 2 of 3 on one text: that click's pairs only; three
    different picks: none; one pick against two ties: none; two picks and a skip: the skip judges nothing."""
    from app.annotation.comparisons import create_comparison
    from app.annotation.prompts import import_prompts
    from app.dataset.clicks import majority_clicks
    from app.dataset.snapshot import snapshot_clicks, take_snapshot

    plans = {"agree": [0, 0, 1], "split": [0, 1, 2], "ties": [0, "tie", "tie"], "skip": [1, 1, "skip"]}
    app.config["ANNOTATION_OVERLAP"] = 3
    app.config["GOLD_RATE"] = 0.0
    with app.app_context():
        people = [create_user(name=f"o{i}", role="annotator")[0].id for i in range(3)]
        import_prompts(texts=[f"Fix bug number {i} now." for i in range(len(plans))], source="t", max_chars=500)
        groups = {}
        for name, plan in plans.items():
            shown = [create_comparison(user_id=person) for person in people]
            assert len({c.root_id or c.id for c in shown}) == 1  # one comparison and its two copies
            texts = [c.text for c in shown[0].candidates]
            for comparison, answer in zip(shown, plan, strict=True):
                if isinstance(answer, int):
                    [pick] = [c for c in comparison.candidates if c.text == texts[answer]]
                    record_answer(user_id=comparison.user_id, comparison_id=comparison.id, candidate_id=pick.id,
                                  verdict="choice")
                else:
                    record_answer(user_id=comparison.user_id, comparison_id=comparison.id, candidate_id=None,
                                  verdict=answer)
            groups[name] = (shown[0].id, texts)
        kept = list(majority_clicks(choice_preferences()))
        assert {c.group_id for c in kept} == {groups["agree"][0], groups["skip"][0]}
        for click in kept:
            name = "agree" if click.group_id == groups["agree"][0] else "skip"
            assert dict(click.candidates)[click.chosen_candidate_id] == groups[name][1][plans[name][0]]
        assert len(list(choice_preferences())) == 9  # "each" keeps every pick

        snapshot, _ = take_snapshot(overlap_pairs="majority")
        assert snapshot["overlap_pairs"] == "majority" and snapshot["clicks"] == 2 and snapshot["pairs"] == 4
        assert len(list(snapshot_clicks(snapshot))) == 2
        assert take_snapshot()[0]["clicks"] == 9


def test_progress_counts_the_pool_still_needing_answers_and_is_shared_through_redis(app):
    """remaining: pool prompts with fewer answers than ANNOTATION_OVERLAP. With Redis, every process reads the same
    cached counters (one process each made "all" go down for an annotator whose clicks went to two)."""
    import redis

    from app.annotation.answers import progress
    from app.annotation.comparisons import create_comparison
    from app.annotation.prompts import import_prompts
    from tests import services

    app.config["REDIS_URL"] = services.redis_url()
    conn = redis.Redis.from_url(app.config["REDIS_URL"])
    conn.delete("prefloop:progress")
    app.config["GOLD_RATE"] = 0.0
    with app.app_context():
        a, b = (create_user(name=n, role="annotator")[0].id for n in ("pa", "pb"))
        import_prompts(texts=["Fix it.", "Call me.", "Send it."], source="t", max_chars=100)
        assert progress(user_id=a, fresh=True) | {"mine": 0} == {"mine": 0, "total": 0, "pool": 3, "pool_answered": 0,
                                                                 "remaining": 3}
        app.config["ANNOTATION_OVERLAP"] = 2
        first = create_comparison(user_id=a)
        record_answer(user_id=a, comparison_id=first.id, candidate_id=None, verdict="skip")
        counts = progress(user_id=a, fresh=True)
        assert (counts["pool_answered"], counts["remaining"]) == (1, 3)  # one answer of the two it needs
        copy = create_comparison(user_id=b)
        assert copy.root_id == first.id
        record_answer(user_id=b, comparison_id=copy.id, candidate_id=None, verdict="tie")
        assert progress(user_id=b, fresh=True)["remaining"] == 2
        # Another process (its own in-memory cache is empty) reads what this one stored.
        app.extensions.pop("prefloop_shared_progress")
        conn.set("prefloop:progress", '{"total": 99, "pool": 3, "pool_answered": 1, "remaining": 2}')
        assert progress(user_id=a)["total"] == 99
    conn.delete("prefloop:progress")
