"""The CTRS judge: 11 items, 0-6, with a rationale and evidence turns for each.

Two modes: `one_call` asks for all items at once (cheaper: the transcript is read once);
`per_item` asks one call per item (each item gets the judge's full attention). The
benchmark compares their tokens and agreement.

Two rubric layouts. ctrs@1.0 is asked exactly as before (prompt, schema and output budget),
so its fingerprint, and so every stored 1.0 unit, stays valid. ctrs@2.0 (`CTRSRubric2`)
adds the first-session frame, the risk rule and each item's scope note to the prompt, the
skill examples unless the plan turns them off (they are in the fingerprint), and for the
items a risk pivot may displace a `status`: `displaced_by_risk` there needs evidence of the
client's risk turn and the therapist's turn to it, and such an item is stored apart from
the scored ones (`result["displaced"]`), never as a number. The status is a second field
beside the score rather than a union of shapes, so the schema has no anyOf and reads the
same to every strict structured-output mode.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, Field

from therapygym.judges.base import (
    JudgeSettings,
    RubricJudge,
    evidence_field,
    rationale_field,
    strict_model,
)
from therapygym.judges.parsing import Structured, structured_call
from therapygym.judges.render import RenderedTranscript, render_transcript
from therapygym.judges.rubric import (
    DISPLACED,
    CTRSExamples,
    CTRSItem,
    CTRSRubric,
    CTRSRubric2,
    ctrs_examples,
)
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


def _displaceable_model(labels: tuple[str, ...], rationale_chars: int) -> type[BaseModel]:
    """An item a risk pivot may displace: its status comes before the score, so the judge
    decides whether the item can be rated before rating it."""
    return strict_model(
        "DisplaceableItemScore",
        rationale=rationale_field(rationale_chars),
        evidence=evidence_field(labels),
        status=(Literal["scored", "displaced_by_risk"], ...),
        score=(int, Field(ge=0, le=6, description="Not used when displaced_by_risk.")),
    )


def answer_schema(
    items: list[CTRSItem], shown: RenderedTranscript, rationale_chars: int
) -> type[BaseModel]:
    """The answer to one call: per item a score, and for a 2.0 item a risk pivot may
    displace, a status beside it."""
    labels = tuple(shown.labels)
    plain = _item_model(labels, rationale_chars)
    displaceable = _displaceable_model(labels, rationale_chars)
    return strict_model(
        "CTRSScores",
        **{
            i.id: (displaceable if getattr(i, "displaceable_by_risk", False) else plain, ...)
            for i in items
        },
    )


def displacement_check(
    items: list[CTRSItem], shown: RenderedTranscript
) -> Callable[[BaseModel], str | None]:
    """The semantic check on an answer (a failure is sent back to the judge): a displaced
    item cites the client's turn that raised the risk and the therapist's turn to it, so a
    displacement is always traceable to the pivot that caused it."""
    client, therapist = set(shown.patient_labels), set(shown.therapist_labels)

    def check(answer: BaseModel) -> str | None:
        for item in items:
            got = getattr(answer, item.id)
            if getattr(got, "status", "scored") != DISPLACED:
                continue
            cited = set(got.evidence)
            if not cited & client or not cited & therapist:
                return (
                    f"item {item.id} is {DISPLACED}, so its evidence must cite the client's "
                    "turn that raised the risk and the therapist's turn that turned to it"
                )
        return None

    return check


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
        examples: bool = True,
    ) -> None:
        options: dict[str, Any] = {"mode": mode}
        self.examples: CTRSExamples | None = None
        if isinstance(rubric, CTRSRubric2):  # 1.0 has no examples, and keeps its fingerprint
            self.examples = ctrs_examples(rubric) if examples else None
            options["examples"] = self.examples.fingerprint if self.examples else "none"
        super().__init__(model, rubric, settings, **options)
        self.mode = mode

    @classmethod
    def template_for(cls, rubric: Any) -> str:
        return "ctrs2" if isinstance(rubric, CTRSRubric2) else cls.template

    @classmethod
    def from_plan(
        cls, model: ChatModel, rubric: Any, settings: JudgeSettings, plan: Any
    ) -> CTRSJudge:
        return cls(model, rubric, settings, mode=plan.ctrs_mode, examples=plan.examples)

    def call_messages(
        self, items: list[CTRSItem], shown: RenderedTranscript
    ) -> list[dict[str, str]]:
        """The messages of one call about `items` (what the prompt benchmark measures)."""
        return self.messages(items=items, examples=self.examples, transcript=shown.text)

    async def _ask(self, items: list[CTRSItem], shown: RenderedTranscript, seed: int) -> Any:
        messages = self.call_messages(items, shown)
        shape = (tuple(i.id for i in items), tuple(shown.labels))
        rationale_chars = self.settings.rationale_chars
        if not isinstance(self.rubric, CTRSRubric2):  # 1.0's request, unchanged

            def scores() -> type[BaseModel]:
                item = _item_model(tuple(shown.labels), rationale_chars)
                return strict_model("CTRSScores", **{i.id: (item, ...) for i in items})

            schema, json_schema = self.answer_model(shape, scores)
            return await self.ask(
                messages,
                schema,
                json_schema=json_schema,
                max_tokens=160 * len(items) + 64,
                seed=seed,
            )
        schema, json_schema = self.answer_model(
            shape, lambda: answer_schema(items, shown, rationale_chars)
        )
        return await structured_call(
            self.model,
            messages,
            schema,
            json_schema=json_schema,
            check=displacement_check(items, shown),
            max_attempts=self.settings.max_attempts,
            max_tokens=output_budget(items, self.settings.rationale_chars),
            temperature=self.settings.temperature,
            seed=seed,
        )

    async def score(self, transcript: Transcript, *, sample: int = 0) -> list[ScoreRecord]:
        shown = render_transcript(transcript)
        groups = (
            [self.rubric.items] if self.mode == "one_call" else [[i] for i in self.rubric.items]
        )
        items: dict[str, dict[str, Any]] = {}
        displaced: dict[str, dict[str, Any]] = {}
        failed: dict[str, list[str]] = {}  # error -> the items it failed
        raw: list[str] = []
        tokens = [0, 0]
        for group in groups:
            outcome: Structured[Any] = await self._ask(group, shown, seed=sample)
            raw += outcome.raw_outputs
            tokens[0] += outcome.prompt_tokens
            tokens[1] += outcome.completion_tokens
            if outcome.value is None:
                failed.setdefault(outcome.error or "no result", []).extend(i.id for i in group)
                continue
            for i in group:
                got = getattr(outcome.value, i.id)
                why = {"rationale": got.rationale, "evidence": shown.turn_ids(list(got.evidence))}
                if getattr(got, "status", "scored") == DISPLACED:
                    displaced[i.id] = why
                else:
                    items[i.id] = {"score": got.score, **why}
        result: dict[str, Any] | None = None
        if items or displaced:
            result = {"mode": self.mode, "items": items}
            if isinstance(self.rubric, CTRSRubric2):  # 1.0's records keep their shape
                result["displaced"] = displaced
        rec = self.record(
            transcript,
            sample,
            structured=None,
            result=result,
            error=_failure(failed, len(self.rubric.items)),
            raw_outputs=raw,
        )
        rec.prompt_tokens, rec.completion_tokens = tokens
        return [rec]


def output_budget(items: list[CTRSItem], rationale_chars: int) -> int:
    """`max_tokens` for a 2.0 call: per item its keys, evidence and score (about 30 tokens,
    48 allowed), its rationale at no fewer than 2 characters a token, and the status where
    there is one. It follows the rationale cap (part of the schema) so that a short cap, as
    the demo's on the embedded model, leaves the prompt more of an 8k context."""
    per_item = 48 + rationale_chars // 2
    status = 16 * sum(getattr(i, "displaceable_by_risk", False) for i in items)
    return 64 + per_item * len(items) + status


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
