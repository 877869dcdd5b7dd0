"""The JSON shapes of the arena, annotator agreement and gold accuracy (re-exported by app.web.schemas)."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from app.tables import ARENA_VERDICTS, ArenaBattle
from app.web.schemas import MAX_LATENCY_MS, AnswerBody, Body, Out

VOTE_VERDICTS: tuple[str, ...] = tuple(v for v in ARENA_VERDICTS if v != "choice")


class NewBattle(Body):
    """A typed prompt for an arena battle; without one, a pool prompt."""

    model_config = ConfigDict(extra="forbid")
    prompt: str | None = Field(None, description="up to MAX_INPUT_CHARS characters; null or absent: from the pool")


class VoteBody(Body):
    """Exactly one of candidate_id (the better candidate) or verdict."""

    model_config = ConfigDict(extra="forbid",
                              json_schema_extra={"oneOf": [{"required": ["candidate_id"]}, {"required": ["verdict"]}]})
    candidate_id: int | None = None
    verdict: Literal[VOTE_VERDICTS] | None = None
    latency_ms: int | None = Field(None, ge=0, le=MAX_LATENCY_MS,
                                   description="time to vote; an unusable value is dropped")

    drop_bad_latency = field_validator("latency_ms", mode="before")(AnswerBody.drop_bad_latency.__func__)

    @model_validator(mode="after")
    def exactly_one(self) -> VoteBody:
        if (self.candidate_id is None) == (self.verdict is None):
            raise ValueError("give exactly one of candidate_id or verdict")
        return self


class BattleCandidate(Out):
    id: int
    text: str
    version_id: int | None = Field(None, description="only for operators, once the battle is fetched by id")


class Vote(Out):
    verdict: Literal[ARENA_VERDICTS]
    candidate_id: int | None


class Battle(Out):
    """A battle: its input and two candidates, left first; the vote once there is one."""

    id: int
    prompt: str
    candidates: list[BattleCandidate]
    vote: Vote | None = None


class Standing(Out):
    version_id: int
    rating: float = Field(description="Bradley-Terry, Elo-scaled (1000 is the geometric mean)")
    ci_low: float = Field(description="95% bootstrap interval")
    ci_high: float
    battles: int
    wins: int
    ties: int
    both_bad: int = Field(description="counted as ties in the rating")
    losses: int
    rating_controlled: float | None = Field(None, description="controlled for the answers' length difference in "
                                                                   "words (Bradley-Terry with it as a covariate)")
    ci_low_controlled: float | None = None
    ci_high_controlled: float | None = None


class PairRecord(Out):
    a: int
    b: int
    battles: int
    a_wins: int
    b_wins: int
    ties: int
    both_bad: int


class Leaderboard(Out):
    versions: list[Standing]
    pairs: list[PairRecord]
    votes: int
    length_coefficient: float | None = Field(description="logits a version gains per unit of (a - b) / (a + b) "
                                                         "length in words; positive: voters favour longer answers")


class AnnotatorAgreement(Out):
    annotator: str
    items: int
    pairs: int
    agreeing_pairs: int
    pairwise: float | None


class GoldScore(Out):
    annotator: str
    answered: int
    correct: int
    accuracy: float


class Gold(Out):
    items: int
    annotators: list[GoldScore]


class Agreement(Out):
    """Over comparisons with two or more answers (ANNOTATION_OVERLAP > 1), and each annotator's gold accuracy."""

    alpha: float | None = Field(description="Krippendorff's alpha, nominal; null when undefined")
    pairwise: float | None
    agreeing_pairs: int
    pairs: int
    items: int
    answers: int
    annotators: list[AnnotatorAgreement]
    gold: Gold


def battle_body(row: ArenaBattle, *, reveal: bool = False) -> dict:
    """What the voter sees (no versions); with reveal, each candidate's version; the vote once there is one."""
    fields = {"id": row.id, "prompt": row.input_text,
              "candidates": [{"id": c.id, "text": c.text} | ({"version_id": c.version_id} if reveal else {})
                             for c in row.candidates]}
    if row.verdict is not None:
        fields["vote"] = {"verdict": row.verdict, "candidate_id": row.winner_candidate_id}
    return Battle.respond(fields)
