"""What every judge shares: prompt templates, fingerprints, and the score record."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from therapygym.judges.parsing import Structured, structured_call
from therapygym.judges.rubric import Rubric
from therapygym.judges.rubric import RubricKind as RubricKind  # where plans and calibration look
from therapygym.models.types import ChatModel
from therapygym.records import ScoreRecord, Transcript, score_id
from therapygym.templates import package_text, render_prompt


def _template(name: str) -> str:
    return f"therapygym.judges:prompts/{name}.j2"


def template_source(name: str) -> str:
    """The text of the judge prompt template `name` (what fingerprints hash)."""
    return package_text(_template(name))


def render(name: str, **context: Any) -> str:
    return render_prompt(_template(name), **context)


def prompt_fingerprint(rubric: Rubric, template: str, **settings: Any) -> str:
    """Changes whenever the rubric, the system or task template, or a setting changes."""
    parts = [rubric.fingerprint, template_source("system"), template_source(template)]
    parts += [f"{k}={v}" for k, v in sorted(settings.items())]
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:16]


def rationale_field(max_chars: int) -> Any:
    """A short rationale. The length cap is part of the schema, so constrained decoding
    stops a small model's rationale from running on until max_tokens cuts the JSON (and
    on a slow CPU the rationales are most of the judge's decoding time)."""
    return (str, Field(max_length=max_chars, description="One or two sentences."))


def evidence_field(labels: tuple[str, ...]) -> Any:
    """Evidence as a list of turn labels; the schema's enum keeps it to real labels."""
    if not labels:
        return (list[str], Field(max_length=0))
    return (list[Literal[labels]], Field(max_length=3))  # type: ignore[valid-type]


def strict_model(name: str, **fields: Any) -> type[BaseModel]:
    """A pydantic model that forbids extra keys (so its JSON schema is closed)."""
    return create_model(name, __config__=ConfigDict(extra="forbid"), **fields)


@dataclass(frozen=True)
class JudgeSettings:
    """How every judge calls its model; all of it is part of the prompt fingerprint."""

    max_attempts: int = 3
    temperature: float = 0.0
    rationale_chars: int = 240


class RubricJudge:
    """A judge: a model, a rubric, a task template, and the settings of its calls."""

    template: ClassVar[str]

    def __init__(
        self,
        model: ChatModel,
        rubric: Rubric,
        settings: JudgeSettings | None = None,
        **options: Any,
    ) -> None:
        self.model = model
        self.rubric = rubric
        self.settings = settings or JudgeSettings()
        self.prompt_template = self.template_for(rubric)
        self.fingerprint = prompt_fingerprint(
            rubric, self.prompt_template, **asdict(self.settings), **options
        )
        self._answers: dict[Hashable, tuple[type[BaseModel], dict[str, Any]]] = {}

    @classmethod
    def template_for(cls, rubric: Rubric) -> str:
        """The task template for `rubric`: the kind's own, unless a rubric layout needs
        another (safety@2.0 asks for cues and a checklist, 1.0's prompt stays as it was)."""
        return cls.template

    @classmethod
    def from_plan(
        cls, model: ChatModel, rubric: Rubric, settings: JudgeSettings, plan: Any
    ) -> RubricJudge:
        """This judge as a judging plan (`judges.plan.JudgePlan`) asks for it; a kind with
        options of its own (CTRS's mode) reads them from the plan."""
        return cls(model, rubric, settings)

    def messages(self, **context: Any) -> list[dict[str, str]]:
        """The system message (role, data rule, rubric instructions) and the task."""
        return [
            {"role": "system", "content": render("system", rubric=self.rubric)},
            {
                "role": "user",
                "content": render(self.prompt_template, rubric=self.rubric, **context),
            },
        ]

    def answer_model(
        self, shape: Hashable, build: Callable[[], type[BaseModel]]
    ) -> tuple[type[BaseModel], dict[str, Any]]:
        """The answer model of a call of this `shape` and its JSON schema, built once per
        judge. An answer model depends on the session only through its shape (the turn
        labels evidence may cite; for safety, the cues the session raised), and a run's
        sessions have few shapes, while pydantic's `create_model` and `model_json_schema`
        cost up to ~30 ms a unit (safety@2.0's: most of its client CPU, docs/benchmarks.md).
        `shape` must hold everything `build` reads except the judge's rubric and settings."""
        if shape not in self._answers:
            model = build()
            self._answers[shape] = (model, model.model_json_schema())
        return self._answers[shape]

    async def ask(
        self,
        messages: list[dict[str, str]],
        schema: type[BaseModel],
        *,
        max_tokens: int,
        seed: int,
        json_schema: dict[str, Any] | None = None,
    ) -> Structured[Any]:
        return await structured_call(
            self.model,
            messages,
            schema,
            json_schema=json_schema,
            max_attempts=self.settings.max_attempts,
            max_tokens=max_tokens,
            temperature=self.settings.temperature,
            seed=seed,
        )

    def record(
        self,
        transcript: Transcript,
        sample: int,
        *,
        structured: Structured[Any] | None,
        result: dict[str, Any] | None,
        error: str | None,
        target: str = "",
        rubric: Rubric | None = None,
        raw_outputs: list[str] | None = None,
    ) -> ScoreRecord:
        """The score record of one judgement by this judge, keyed (`score_id`) by the
        session, this judge's model and fingerprint, the rubric (this judge's unless a
        judge splits its rubric, as safety@2.0's groups do), the sample and the target
        turn; the raw outputs and tokens are the structured call's unless given."""
        rubric = rubric or self.rubric
        judge = self.model.spec
        return ScoreRecord(
            score_id=score_id(
                transcript.session_id, judge, rubric.ref, self.fingerprint, sample, target
            ),
            session_id=transcript.session_id,
            judge=judge,
            rubric_id=rubric.id,
            rubric_version=rubric.version,
            prompt_fingerprint=self.fingerprint,
            sample=sample,
            target=target,
            result=result,
            raw_outputs=raw_outputs
            if raw_outputs is not None
            else (structured.raw_outputs if structured else []),
            error=error,
            prompt_tokens=structured.prompt_tokens if structured else 0,
            completion_tokens=structured.completion_tokens if structured else 0,
        )
