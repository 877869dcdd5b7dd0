"""The training job end to end: real clicks on the tiny starter, run_dpo in-process, the gate, the registry."""

import json
import random
import types
import uuid
from pathlib import Path

import pytest
import torch

import app.annotation.comparisons as comparisons
from tests.services import BOTH_BACKENDS

pytestmark = pytest.mark.slow
# The default sft term (weight 1.0, tuned on the default-size starters) drowns the preference signal of the tiny
# test starters on 16 held-out pairs; without it they learn it reliably. The sft path is covered by the
# start="active" test below and by bench/.
TINY_SFT_WEIGHT = 0.0


def collect_clicks(app, monkeypatch, *, n_prompts: int = 20, per_prompt: int = 2, seed: int = 0) -> list[int]:
    """Sample comparisons with the serving model and let a judge pick the shortest candidate; return preference ids."""
    from app.accounts.users import create_user
    from app.annotation.answers import record_answer
    from app.platform.extensions import db
    from app.versions.serving import get_holder
    from worker.corpus import make_prompts

    # Comparisons draw their sampling seed from SystemRandom; a seeded one makes the data, and so the run, repeatable.
    rng = random.Random(seed)
    monkeypatch.setattr(comparisons, "random", types.SimpleNamespace(SystemRandom=lambda: rng, Random=random.Random))
    ids = []
    with app.app_context():
        user, _, _ = create_user(name="judge", role="annotator", password="pw")
        loaded = get_holder(app).current()
        for text in make_prompts(n=n_prompts, seed=seed + 1):
            for _ in range(per_prompt):
                [comparison] = comparisons.generate_comparisons(loaded=loaded, inputs=[(text, None)],
                                                                user_id=user.id)
                db.session.commit()
                best = min(comparison.candidates, key=lambda c: (len(c.text), c.position))
                pref, _ = record_answer(user_id=user.id, comparison_id=comparison.id, candidate_id=best.id,
                                        verdict="choice")
                ids.append(pref.id)
    return ids


def create_run(app, ids: list[int], **overrides) -> str:
    """A queued TrainingRun row as the web would write it: config from the defaults plus overrides."""
    from app.platform.extensions import db
    from app.tables import TrainingRun
    from app.training.jobs import training_config

    with app.app_context():
        config = training_config()
        gate = config["gate"] | overrides.pop("gate", {})
        run = TrainingRun(id=str(uuid.uuid4()), requested_by="adm", config=config | overrides | {"gate": gate},
                          snapshot={"max_preference_id": max(ids, default=0)}, parent_version_id=1)
        db.session.add(run)
        db.session.commit()
        return run.id


def weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))


@pytest.mark.parametrize("arch", ["gpt2", "t5"])
def test_run_trains_saves_evaluates_and_registers(app, arch, monkeypatch):
    from app.dataset.clicks import choice_preferences
    from app.dataset.pairs import build_pairs
    from app.dataset.snapshot import snapshot_hash
    from app.platform.extensions import db
    from app.tables import AuditEvent, ModelVersion, TrainingRun
    from app.versions.registry import active_version_id
    from worker.dpo import run_dpo

    app.config["MAX_NEW_TOKENS"] = 40  # room to end a sentence, so "shorter" is a real, learnable signal
    ids = collect_clicks(app, monkeypatch)
    run_id = create_run(app, ids, sft_weight=TINY_SFT_WEIGHT, gate={"eval_prompts": 12})
    with app.app_context():
        out = run_dpo(run_id)
        run = db.session.get(TrainingRun, run_id)
        version = db.session.get(ModelVersion, 2)
        pairs = list(build_pairs(choice_preferences(upto=max(ids))))  # the run's own bound

        assert run.status in ("succeeded", "rejected") and run.status == out["status"]
        assert run.version_id == 2 and version is not None and version.run_id == run_id
        assert version.status == ("ready" if run.status == "succeeded" else "rejected")
        assert run.started_at and run.finished_at and run.error == ""
        m = run.metrics
        assert m["accuracy_candidate"] > m["accuracy_parent"] == 0.5
        assert m["loss_last"] < m["loss_first"]
        assert m["heldout_pairs"] > 0 and m["train_pairs"] + m["heldout_pairs"] == len(pairs)

        # Progress after every logging step, in the row.
        progress = run.progress
        assert progress["phase"] == "done"
        assert progress["step"] == progress["total_steps"] == len(progress["history"]) > 1
        assert {"step", "loss", "reward_accuracy"} <= set(progress["history"][-1])

        # The folder: a complete checkpoint with the lineage and data it came from.
        folder = Path(app.config["MODEL_STORE"]) / "2"
        manifest = json.loads((folder / "manifest.json").read_text())
        starter = json.loads((Path(app.config["MODEL_STORE"]) / "1" / "manifest.json").read_text())
        assert manifest["parent_version"] == manifest["init_version"] == manifest["reference_version"] == 1
        assert manifest["run_id"] == run_id and manifest["arch"] == starter["arch"]
        assert manifest["snapshot_hash"] == snapshot_hash(pairs) and manifest["pair_count"] == len(pairs)
        assert manifest["training"]["lr"] == 1e-4 and manifest["training"]["loss_type"] == ["sigmoid"]
        assert manifest["training"]["start"] == "base" and manifest["training"]["loss_weights"] == [1.0]
        assert manifest["prompt_template"] == starter["prompt_template"]
        assert version.metrics["passed"] == (run.status == "succeeded")  # the gate's verdict, in the registry row
        assert manifest["training"]["summary"]["loss_last"] == m["loss_last"]

        before, after = weights(Path(app.config["MODEL_STORE"]) / "1"), weights(folder)
        changed = [k for k in before if not torch.equal(before[k], after[k])]
        assert len(changed) > len(before) // 2, "training must move most weights"

        if run.status == "succeeded":
            assert active_version_id() == 2 and out["activated"] is True
            promote = db.session.query(AuditEvent).filter_by(action="promote").one()
            assert promote.actor == f"run:{run_id}" and promote.from_version_id == 1
        else:
            assert active_version_id() == 1


def test_a_bounded_run_trains_on_at_most_max_pairs(app, monkeypatch):
    """TRAIN_MAX_PAIRS: the run trains on a bounded share of the clicks and its manifest says which share."""
    from app.platform.extensions import db
    from app.tables import TrainingRun
    from worker.dpo import run_dpo

    ids = collect_clicks(app, monkeypatch, n_prompts=12)
    run_id = create_run(app, ids, max_pairs=16, sft_weight=TINY_SFT_WEIGHT, gate={"eval_prompts": 4})
    with app.app_context():
        run_dpo(run_id)
        run = db.session.get(TrainingRun, run_id)
        manifest = json.loads((Path(app.config["MODEL_STORE"]) / "2" / "manifest.json").read_text())
        snap = manifest["snapshot"]
        assert run.status in ("succeeded", "rejected"), run.error
        assert 14 <= run.metrics["train_pairs"] == snap["train_pairs"] <= 16
        assert run.metrics["heldout_pairs"] == snap["heldout_pairs"] <= 4
        assert snap["train_clicks"] < snap["clicks"] == len(ids)
        assert manifest["training"]["max_pairs"] == 16


def test_a_second_round_is_also_tested_against_the_versions_before_its_parent(app, monkeypatch):
    """GATE_ANCESTORS: the run from version 2 (a child of the starter) is tested against 2 and against 1 on the
    same held-out clicks; with the parent only (0), against 2 alone."""
    from app.platform.extensions import db
    from app.tables import ModelVersion, TrainingRun
    from worker.dpo import run_dpo

    ids = collect_clicks(app, monkeypatch, n_prompts=12)
    first = create_run(app, ids, sft_weight=TINY_SFT_WEIGHT, gate={"eval_prompts": 4})
    with app.app_context():
        run_dpo(first)
        assert db.session.get(ModelVersion, 2).parent_id == 1
        assert "ancestors" not in db.session.get(TrainingRun, first).metrics  # the starter has no earlier version
    runs = {}
    for ancestors in (3, 0):
        runs[ancestors] = create_run(app, ids, sft_weight=TINY_SFT_WEIGHT, gate={"eval_prompts": 4,
                                                                                 "ancestors": ancestors})
        with app.app_context():
            db.session.get(TrainingRun, runs[ancestors]).parent_version_id = 2
            db.session.commit()
            run_dpo(runs[ancestors])
    with app.app_context():
        m = db.session.get(TrainingRun, runs[3]).metrics
        assert m["heldout_pairs"] > 0 and [t["version_id"] for t in m["ancestors"]] == [1]
        [test] = m["ancestors"]
        # Version 1 is the base: its reward is 0 on every pair, a tie, so it ranks each pair half right.
        assert test["accuracy"] == 0.5 and test["level"] == 0.05 and 0 < test["p_worse"] <= 1
        assert test["inputs"] == m["heldout_inputs"]
        assert "ancestors" not in db.session.get(TrainingRun, runs[0]).metrics


def test_over_trained_dpo_collapses_and_the_gate_rejects_it(app, monkeypatch):
    """Likelihood displacement: held-out accuracy stays high while the samples turn to gibberish."""
    from app.platform.extensions import db
    from app.tables import AuditEvent, ModelVersion, TrainingRun
    from app.versions.registry import active_version_id
    from worker.dpo import run_dpo

    app.config["MAX_NEW_TOKENS"] = 40
    ids = collect_clicks(app, monkeypatch, n_prompts=16)
    # Unguarded on purpose: no sft term, a high learning rate and many epochs.
    run_id = create_run(app, ids, lr=5e-3, epochs=8, sft_weight=0.0, gate={"eval_prompts": 12})
    with app.app_context():
        run_dpo(run_id)
        run = db.session.get(TrainingRun, run_id)
        m = run.metrics
        assert run.status == "rejected" and db.session.get(ModelVersion, 2).status == "rejected"
        assert m["accuracy_candidate"] > m["accuracy_parent"], "the ranking alone does not see the collapse"
        assert m["chosen_logp_candidate"] < m["chosen_logp_parent"] - 10, "the chosen text became less likely"
        assert any("fluency fell" in r for r in m["reasons"]), m["reasons"]
        assert active_version_id() == 1
        event = db.session.query(AuditEvent).filter_by(action="run_rejected").one()
        assert "fluency" in event.reason and event.to_version_id == 2


@pytest.mark.parametrize("backend", BOTH_BACKENDS, indirect=True)  # the compare-and-set is the database's job
def test_rollback_during_training_is_not_overridden(app, monkeypatch):
    """The operator moved the active pointer while the run trained: the finished run must not move it back."""
    from app.lm.checkpoint import read_manifest
    from app.platform.extensions import db
    from app.tables import AuditEvent, ModelVersion, TrainingRun
    from app.versions.registry import activate_version, active_version_id, register_version
    from worker.checkpoints import import_model
    from worker.dpo import run_dpo

    app.config["MAX_NEW_TOKENS"] = 40
    ids = collect_clicks(app, monkeypatch)
    # start "active" continues from the parent with the sigmoid+sft loss: this covers that path too.
    # The gate's diversity rule is off: the test is about a passing version that a rollback keeps from serving.
    run_id = create_run(app, ids, start="active", gate={"eval_prompts": 12, "max_distinct_drop_se": 1000.0})
    with app.app_context():
        number, path = import_model(source=str(Path(app.config["MODEL_STORE"]) / "1"),
                                    store=app.config["MODEL_STORE"])
        register_version(number=number, path=path, manifest=read_manifest(path))
        activate_version(version_id=number, actor="opr", reason="bad outputs", action="rollback")
        assert active_version_id() == 2

        out = run_dpo(run_id)
        run = db.session.get(TrainingRun, run_id)
        assert run.status == "succeeded" and run.version_id == 3 == out["version_id"]
        assert db.session.get(ModelVersion, 3).status == "ready", "it passed the gate and stays available"
        assert active_version_id() == 2
        assert run.metrics["activated"] is False and "not activated" in run.error
        assert "changed" in run.metrics["not_activated_reason"]
        assert db.session.query(AuditEvent).filter_by(action="promote").count() == 0
        assert db.session.query(AuditEvent).filter_by(action="promote_skipped").one().to_version_id == 3
        manifest = read_manifest(db.session.get(ModelVersion, 3).path)
        assert manifest["training"]["loss_type"] == ["sigmoid", "sft"]
        assert manifest["training"]["loss_weights"] == [1.0, 1.0]

        # A duplicate delivery of the finished job does nothing: no second version for one run.
        again = run_dpo(run_id)
        assert again["version_id"] == 3 and db.session.query(ModelVersion).count() == 3


@pytest.mark.parametrize("arch", ["gpt2", "t5"])
def test_lora_run_saves_a_merged_plain_checkpoint(app, arch, monkeypatch):
    from app.lm.checkpoint import load_checkpoint
    from app.lm.sampling import sample_candidates
    from app.platform.extensions import db
    from app.tables import TrainingRun
    from worker.dpo import run_dpo

    ids = collect_clicks(app, monkeypatch, n_prompts=8)
    run_id = create_run(app, ids, lora=True, lr=5e-4, gate={"eval_prompts": 4})
    with app.app_context():
        run_dpo(run_id)
        run = db.session.get(TrainingRun, run_id)
        assert run.status in ("succeeded", "rejected"), run.error
    folder = Path(app.config["MODEL_STORE"]) / "2"
    assert not (folder / "adapter_config.json").exists(), "the adapter must be merged, not saved beside the model"
    before, after = weights(Path(app.config["MODEL_STORE"]) / "1"), weights(folder)
    assert set(before) == set(after), "same parameter names as the starter: a plain checkpoint"
    assert any(not torch.equal(before[k], after[k]) for k in before)
    loaded = load_checkpoint(str(folder), device="cpu")
    assert len(sample_candidates(loaded, model_prompt=loaded.format_prompt("Send the report now."), n=3)[0]) == 3


def test_a_kto_run_learns_from_every_answer_all_bad_included(app, monkeypatch):
    """TRAIN_LOSS=kto: TRL's KTOTrainer trains on each candidate labelled (the pick good, the rest bad) and on all
    three candidates of an "all bad" answer as bad, which DPO drops; those become less likely than under the starter,
    and the held-out pairs still gate the version."""
    from app.accounts.users import create_user
    from app.annotation.answers import record_answer
    from app.dataset.clicks import choice_preferences
    from app.dataset.pairs import kto_rows
    from app.lm.checkpoint import load_checkpoint
    from app.lm.scoring import completion_logps
    from app.platform.extensions import db
    from app.tables import TrainingRun
    from app.versions.serving import get_holder
    from worker.dpo import run_dpo

    app.config["MAX_NEW_TOKENS"] = 40
    ids = collect_clicks(app, monkeypatch, n_prompts=12)
    with app.app_context():
        user, _, _ = create_user(name="strict", role="annotator", password="pw")
        loaded = get_holder(app).current()
        for text in ("Tell me the time.", "Bring the ladder back.", "Stop calling so late."):
            [comparison] = comparisons.generate_comparisons(loaded=loaded, inputs=[(text, None)], user_id=user.id)
            db.session.commit()
            pref, _ = record_answer(user_id=user.id, comparison_id=comparison.id, candidate_id=None,
                                    verdict="all_bad")
            ids.append(pref.id)
        bad = [row for click in choice_preferences(verdicts=("all_bad",)) for row in kto_rows(click)]
    run_id = create_run(app, ids, loss="kto", lr=5e-4, epochs=3, gate={"eval_prompts": 4})
    with app.app_context():
        run_dpo(run_id)
        run = db.session.get(TrainingRun, run_id)
        assert run.status in ("succeeded", "rejected"), run.error
        manifest = json.loads((Path(app.config["MODEL_STORE"]) / "2" / "manifest.json").read_text())
        snap = manifest["snapshot"]
        assert manifest["training"]["loss_type"] == ["kto"] and manifest["training"]["loss_weights"] == [1.0]
        # Three rows per trained click, three more per "all bad" answer whose input is not held out.
        held = set(snap["heldout_inputs"])
        all_bad_rows = sum(3 for r in bad[::3] if r["input"] not in held)
        assert all_bad_rows >= 6 and snap["kto_rows"] == 3 * snap["train_clicks"] + all_bad_rows
        assert snap["kto_bad_rows"] == 2 * snap["train_clicks"] + all_bad_rows  # no also-fine marks here
        assert run.metrics["heldout_pairs"] > 0
        # What it learnt, on its own training rows: the "all bad" answers fell, and the picks rose against the rest.
        trained_bad = [r for r in bad if r["input"] not in held]
        picked = [r for c in choice_preferences() if c.input_text not in held for r in kto_rows(c)]

        def moved(rows):
            prompts, completions = [r["prompt"] for r in rows], [r["completion"] for r in rows]
            store = Path(app.config["MODEL_STORE"])
            before, after = (completion_logps(load_checkpoint(str(store / v), device="cpu"), prompts, completions)[0]
                             for v in ("1", "2"))
            return [a - b for a, b in zip(after, before, strict=True)]

        assert sum(moved(trained_bad)) < 0
        change = moved(picked)
        good = [d for d, r in zip(change, picked, strict=True) if r["label"]]
        rest = [d for d, r in zip(change, picked, strict=True) if not r["label"]]
        assert sum(good) / len(good) > sum(rest) / len(rest), (good, rest)


def test_a_failing_run_is_marked_failed_with_its_error(app):
    from app.platform.extensions import db
    from app.tables import TrainingRun
    from worker.dpo import run_dpo

    run_id = create_run(app, [])
    with app.app_context():
        with pytest.raises(ValueError, match="no training pairs"):
            run_dpo(run_id)
        run = db.session.get(TrainingRun, run_id)
        assert run.status == "failed" and run.finished_at is not None
        assert "ValueError: run" in run.error and "no training pairs" in run.error and "dpo.py" in run.error
        assert run.version_id is None


@pytest.mark.redis
def test_progress_reaches_the_rq_job_meta(app, monkeypatch):
    """Under a real RQ worker (in-process SimpleWorker, real Redis) the job's meta carries the same progress."""
    import redis
    from rq import Queue, SimpleWorker

    from app.platform.extensions import db
    from app.tables import TrainingRun
    from tests import services

    conn = redis.Redis.from_url(services.redis_url())
    ids = collect_clicks(app, monkeypatch, n_prompts=8)
    run_id = create_run(app, ids, gate={"eval_prompts": 4})
    queue = Queue(f"test-training-{run_id}", connection=conn)
    try:
        job = queue.enqueue("worker.dpo.run_dpo", run_id, job_id=run_id, job_timeout=300)
        with app.app_context():  # what the worker entry does once, for every job
            SimpleWorker([queue], connection=conn).work(burst=True, max_jobs=1)
            run = db.session.get(TrainingRun, run_id)
            assert run.status in ("succeeded", "rejected"), run.error
            meta = job.get_meta()["progress"]
            assert meta["phase"] == "done" and meta["step"] == meta["total_steps"] == run.progress["step"]
            assert meta["history"] == run.progress["history"]
    finally:
        job.delete()
        queue.delete(delete_jobs=True)


def test_held_out_inputs_stay_held_out_as_clicks_accumulate():
    """The split is by input and stable: an input held out in one run is held out in every later run, so the
    gate never scores the parent on inputs it trained on."""
    from worker.plan import split_by_prompt

    def pairs(inputs):
        return [{"input": t, "prompt": t, "chosen": " a", "rejected": " b"} for t in inputs for _ in range(2)]

    first_inputs = [f"Send report {i} now." for i in range(30)]
    train1, held1 = split_by_prompt(pairs(first_inputs), holdout=0.2, seed=0)
    train2, held2 = split_by_prompt(pairs(first_inputs + [f"Fix bug {i} today." for i in range(60)]),
                                    holdout=0.2, seed=0)
    held1, held2 = {p["input"] for p in held1}, {p["input"] for p in held2}
    assert held1 and held1 <= held2, "what was held out stays held out"
    assert not held2 & {p["input"] for p in train2} and not held1 & {p["input"] for p in train1}
    assert 0.1 < len(held2) / 90 < 0.3
    # Two inputs: one trains and one is held out, whatever the hash says.
    train, held = split_by_prompt(pairs(["a.", "b."]), holdout=0.2, seed=0)
    assert len({p["input"] for p in train}) == 1 and len({p["input"] for p in held}) == 1


def test_the_generation_check_uses_prompts_it_never_trained_on_first(app):
    from app.annotation.prompts import import_prompts
    from worker.plan import evaluation_texts

    with app.app_context():
        import_prompts(texts=[f"Fix report {i} now." for i in range(6)], source="t", max_chars=500)
        trained = [{"input": f"Fix report {i} now."} for i in (0, 2, 3)]
        assert evaluation_texts(trained, limit=4) == ["Fix report 1 now.", "Fix report 4 now.",
                                                      "Fix report 5 now.", "Fix report 0 now."]


def test_the_generation_check_leads_with_the_probe_inputs_it_never_trained_on(app):
    """Issue 27: the probe set is the same from run to run, so every version of a lineage is checked on it; a probe
    input it trained on goes with the trained ones, and none is checked twice."""
    from app.annotation.prompts import import_prompts
    from app.versions.probes import save_probes
    from worker.plan import evaluation_texts

    with app.app_context():
        import_prompts(texts=[f"Fix report {i} now." for i in range(6)], source="t", max_chars=500)
        save_probes(inputs=["Fix report 5 now.", "Fix report 2 now.", "Call Ana at 9."], actor="t")
        trained = [{"input": f"Fix report {i} now."} for i in (0, 2, 3)]
        assert evaluation_texts(trained, limit=5) == ["Fix report 5 now.", "Call Ana at 9.", "Fix report 1 now.",
                                                      "Fix report 4 now.", "Fix report 0 now."]
        assert evaluation_texts(trained, limit=1) == ["Fix report 5 now."]


def test_arena_votes_train_only_when_asked(app, monkeypatch, starter_dir):
    """TRAIN_ARENA_VOTES: off, the snapshot holds the clicks alone; on, each vote for a winner adds one pair
    (winner over loser), and the run trains on both and records the vote bound for the next run. A vote cast after
    the snapshot, on a battle generated before it, is not in it."""
    from app.accounts.users import create_user
    from app.arena.battles import create_battle, record_vote
    from app.dataset.pairs import build_pairs
    from app.dataset.snapshot import snapshot_clicks, take_snapshot
    from app.platform.extensions import db
    from app.tables import TrainingRun
    from tests.conftest import install_child
    from worker.dpo import run_dpo

    install_child(app, starter_dir["gpt2"], number=2, parent=1)  # the arena's default pair: 1 and 2
    ids = collect_clicks(app, monkeypatch, n_prompts=8)
    with app.app_context():
        voter, _, _ = create_user(name="voter", role="annotator", password="pw")
        voted = 0
        for i in range(8):
            b = create_battle(user_id=voter.id, input_text=f"Send the report number {i} today.")
            a, c = b.candidates
            if a.text != c.text:
                record_vote(user_id=voter.id, battle_id=b.id, candidate_id=min((a, c), key=lambda x: len(x.text)).id,
                            verdict=None)
                voted += 1
        record_vote(user_id=voter.id, battle_id=create_battle(user_id=voter.id, input_text="Tie me.").id,
                    candidate_id=None, verdict="tie")  # a tie is no pair
        clicks_only, _ = take_snapshot()
        with_votes, digest = take_snapshot(arena_votes=True)
        assert "votes_until" not in clicks_only and clicks_only["clicks"] == len(ids)
        assert with_votes["votes"] == voted > 0 and with_votes["pairs"] == clicks_only["pairs"] + voted
        late = create_battle(user_id=voter.id, input_text="Handed out before, voted after.")
        later, _ = take_snapshot(arena_votes=True)
        record_vote(user_id=voter.id, battle_id=late.id, candidate_id=late.candidates[0].id, verdict=None)
        assert sum("battle_id" in p for p in build_pairs(snapshot_clicks(later))) == voted
        vote_pairs = [p for p in build_pairs(snapshot_clicks(with_votes)) if "battle_id" in p]
        assert len(vote_pairs) == voted and all(len(p["chosen"]) <= len(p["rejected"]) for p in vote_pairs)
        assert {p["chosen_version_id"] for p in vote_pairs} | {p["rejected_version_id"] for p in vote_pairs} <= {1, 2}
    run_id = create_run(app, ids, sft_weight=TINY_SFT_WEIGHT, gate={"eval_prompts": 4})
    with app.app_context():
        run = db.session.get(TrainingRun, run_id)
        run.snapshot, run.parent_version_id = with_votes, 2
        db.session.commit()
        run_dpo(run_id)
        run = db.session.get(TrainingRun, run_id)
        assert run.status in ("succeeded", "rejected"), run.error
        manifest = json.loads((Path(app.config["MODEL_STORE"]) / "3" / "manifest.json").read_text())
        assert manifest["snapshot"]["pairs"] == with_votes["pairs"]
        assert manifest["snapshot"]["votes_until"] == with_votes["votes_until"]
        assert manifest["snapshot"]["clicks"] == len(ids) + voted and manifest["snapshot"]["missing_clicks"] == 0
