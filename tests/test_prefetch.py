"""The prefetch buffer: ready comparisons of the serving version, refilled in batches at a low-water mark."""

from sqlalchemy import select

from app.comparisons import claim_prefetched
from app.extensions import db
from app.prefetch import fill_buffer, ready_count
from app.prompts import import_prompts
from app.serving import get_holder
from app.tables import Comparison
from app.users import create_user


def spy_generate(app, monkeypatch) -> list[int]:
    """Record the number of prompts in each generate call of the serving model."""
    loaded = get_holder(app).current()
    calls, original = [], loaded.model.generate
    monkeypatch.setattr(loaded.model, "generate",
                        lambda *a, **k: calls.append(k["input_ids"].shape[0]) or original(*a, **k))
    return calls


def test_fills_to_the_limit_in_one_batched_call(app, monkeypatch):
    with app.app_context():
        import_prompts(texts=[f"Fix report {i} now." for i in range(20)], source="t", max_chars=500)
    calls = spy_generate(app, monkeypatch)
    assert fill_buffer(app, limit=8) == 8
    with app.app_context():
        ready = db.session.scalars(select(Comparison).where(Comparison.state == "ready")).all()
        assert ready_count(1) == 8 and {c.model_version_id for c in ready} == {1}
        assert len({c.prompt_id for c in ready}) == 8, "one batch takes 8 different pool prompts"
        assert sorted(c.settings["batch_index"] for c in ready) == list(range(8))
        assert len({c.seed for c in ready}) == 1 and all(len(c.candidates) == 3 for c in ready)
    assert calls[0] == 8, "the first call samples all 8 prompts together (later ones only resample duplicates)"


def test_refills_only_at_the_low_water_mark(app, monkeypatch):
    with app.app_context():
        import_prompts(texts=[f"Sign contract {i} today." for i in range(20)], source="t", max_chars=500)
        user, _, _ = create_user(name="ann", role="annotator", password="pw")
        user_id = user.id
    assert fill_buffer(app, limit=8) == 8
    with app.app_context():
        for _ in range(3):
            assert claim_prefetched(user_id=user_id, version_id=1) is not None
    assert fill_buffer(app, limit=8) == 0, "5 of 8 left: above half, no refill yet"
    with app.app_context():
        assert claim_prefetched(user_id=user_id, version_id=1) is not None
    calls = spy_generate(app, monkeypatch)
    assert fill_buffer(app, limit=8) == 4
    assert calls[0] == 4
    with app.app_context():
        assert ready_count(1) == 8
