"""The CTRS judge: 11 items, 0-6, with a rationale and evidence turns for each.

Two modes: `one_call` asks for all items at once (cheaper: the transcript is read once);
`per_item` asks one call per item (each item gets the judge's full attention). The
benchmark compares their tokens and agreement.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from therapygym.judges.base import (
    JudgeSettings,
    RubricJudge,
    evidence_field,
    rationale_field,
    record,
    strict_model,
)
from therapygym.judges.render import RenderedTranscript, render_transcript
from therapygym.judges.rubric import CTRSItem, CTRSRubric
from therapygym.models.types import ChatModel
from therapygym.records import ScoreRecord, Transcript

CTRSMode = Literal["one_call", "per_item"]


def _item_model(labels: tuple[str, ...], rationale_chars: int) -> type[BaseModel]:
    return strict_model(
        "ItemScore",
        rationale=rationale_field(rationale_chars),
        evidence=evidence_field(labels),
        score=(int, Field(ge=0, le=6)),
    )


class CTRSJudge(RubricJudge):
    """Scores a whole session on the CTRS."""

    template = "ctrs"
    rubric: CTRSRubric

    def __init__(
        self,
        model: ChatModel,
        rubric: CTRSRubric,
        settings: JudgeSettings | None = None,
        *,
        mode: CTRSMode = "one_call",
    ) -> None:
        super().__init__(model, rubric, settings, mode=mode)
        self.mode = mode

    @classmethod
    def from_plan(
        cls, model: ChatModel, rubric: Any, settings: JudgeSettings, plan: Any
    ) -> CTRSJudge:
        return cls(model, rubric, settings, mode=plan.ctrs_mode)

    async def _ask(self, items: list[CTRSItem], shown: RenderedTranscript, seed: int) -> Any:
        item = _item_model(tuple(shown.labels), self.settings.rationale_chars)
        schema = strict_model("CTRSScores", **{i.id: (item, ...) for i in items})
        return await self.ask(
            self.messages(items=items, transcript=shown.text),
            schema,
            max_tokens=160 * len(items) + 64,
            seed=seed,
        )

    async def score(self, transcript: Transcript, *, sample: int = 0) -> list[ScoreRecord]:
        shown = render_transcript(transcript)
        groups = (
            [self.rubric.items] if self.mode == "one_call" else [[i] for i in self.rubric.items]
        )
        items: dict[str, dict[str, Any]] = {}
        failed: dict[str, list[str]] = {}  # error -> the items it failed
        raw: list[str] = []
        tokens = [0, 0]
        for group in groups:
            outcome = await self._ask(group, shown, seed=sample)
            raw += outcome.raw_outputs
            tokens[0] += outcome.prompt_tokens
            tokens[1] += outcome.completion_tokens
            if outcome.value is None:
                failed.setdefault(outcome.error or "no result", []).extend(i.id for i in group)
                continue
            for i in group:
                got = getattr(outcome.value, i.id)
                items[i.id] = {
                    "score": got.score,
                    "rationale": got.rationale,
                    "evidence": shown.turn_ids(list(got.evidence)),
                }
        rec = record(
            structured=None,
            result={"mode": self.mode, "items": items} if items else None,
            error=_failure(failed, len(self.rubric.items)),
            session_id=transcript.session_id,
            judge=self.model.spec,
            rubric=self.rubric,
            fingerprint=self.fingerprint,
            sample=sample,
            raw_outputs=raw,
        )
        rec.prompt_tokens, rec.completion_tokens = tokens
        return [rec]


def _failure(failed: dict[str, list[str]], n_items: int) -> str | None:
    """A unit's error: each cause once, led by the items it failed unless it failed all of
    them. Naming all 11 items before the cause pushed the cause past what a terminal line
    of judge failures shows (it read "...homework: invalid judge output ...: it is not ")."""
    if not failed:
        return None
    return "; ".join(
        error if len(ids) == n_items else f"{', '.join(ids)}: {error}"
        for error, ids in failed.items()
    )
