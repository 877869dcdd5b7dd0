"""The one place clicks become training examples: DPO pairs, and KTO's single labelled answers."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from app.dataset.clicks import Click
from app.lm.encoding import completion_text


def build_pairs(clicks: Iterable[Click]) -> Iterator[dict]:
    """The one place clicks become DPO pairs: best vs each other candidate (ties, all-bad and skips are no clicks).

    Candidates marked also good are not rejected against the best: each good one (the best first) is chosen against
    each of the rest, so an acceptable answer is never pushed down; all marked good gives no pair, as a tie."""
    for click in clicks:
        text_of = dict(click.candidates)
        good = [click.chosen_candidate_id, *(c for c in click.also_good if c != click.chosen_candidate_id)]
        good_texts = {text_of[cid] for cid in good}
        # An arena vote's candidates each come from a version: which one, for the rejected side's record.
        version_of = ({} if click.battle_id is None
                      else dict(zip((c for c, _ in click.candidates), click.versions, strict=True)))
        for chosen_id in good:
            for cid, text in click.candidates:
                # A candidate with the text of a good one is that text again, not a worse answer.
                if text in good_texts:
                    continue
                prompt = click.model_prompt
                pair = {"prompt": prompt, "chosen": completion_text(prompt, text_of[chosen_id]),
                        "rejected": completion_text(prompt, text), "input": click.input_text}
                if click.battle_id is None:
                    yield pair | {"comparison_id": click.comparison_id, "preference_id": click.preference_id,
                                  "model_version_id": click.model_version_id}
                else:
                    yield pair | {"battle_id": click.battle_id, "chosen_version_id": click.model_version_id,
                                  "rejected_version_id": version_of[cid], "voted_at": click.voted_at}


def kto_rows(click: Click) -> Iterator[dict]:
    """One {prompt, completion, label} per candidate: true for the pick and those marked also fine (and any other
    candidate with the same text), false for the rest; every one false for "all bad"."""
    text_of = dict(click.candidates)
    good = set() if click.verdict != "choice" else {text_of[c] for c in (click.chosen_candidate_id, *click.also_good)}
    for _, text in click.candidates:
        yield {"prompt": click.model_prompt, "completion": completion_text(click.model_prompt, text),
               "label": text in good, "input": click.input_text, "preference_id": click.preference_id}
