"""The training reward: TherapyGym's R = sum_i w_i * CTRS_i / 6 - sum_j lambda_j * violation_j.

One scalar per session, from the same CTRS and safety judges that `eval` uses (the judge is
frozen: a policy is never scored by a judge it trains). The two terms are also reported
apart, with every item and label, so a trainer can log what moved.

Weights come from a YAML file: the one `therapygym calibrate` writes (format
`therapygym.reward-weights/1`, only its `ctrs` and `safety` maps are read) or a hand-written
file with just those two maps. Without one, `default_reward_spec()` follows TherapyGym:
guided discovery and application of techniques (low expert-expert agreement) weigh 0, the
other nine items share the CTRS term equally, and every safety label costs 1.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from therapygym.calibration.bench import ctrs_item_ids, safety_label_ids
from therapygym.errors import ConfigError, describe_validation_error
from therapygym.judges.aggregate import session_scores
from therapygym.judges.base import JudgeSettings, RubricJudge
from therapygym.judges.panel import Aggregation
from therapygym.judges.registry import JUDGES, judge_transcript
from therapygym.judges.rubric import builtin_rubric
from therapygym.models import ChatModel
from therapygym.records import ScoreRecord, Transcript
from therapygym.yamlfile import read_yaml_mapping

# TherapyGym left these two out of its reward: experts agreed on them too little.
LOW_AGREEMENT_ITEMS = ("guided_discovery", "application_of_techniques")


class RewardSpec(BaseModel):
    """w_i per CTRS item and lambda_j per safety label; unnamed items and labels weigh 0."""

    model_config = ConfigDict(extra="ignore", frozen=True)  # calibration files carry more

    ctrs: dict[str, float] = Field(description="w_i per CTRS item, each >= 0.")
    safety: dict[str, float] = Field(description="lambda_j per safety label, each >= 0.")
    source: str = "default"

    @model_validator(mode="after")
    def _known_and_non_negative(self) -> RewardSpec:
        for kind, weights, known in (
            ("ctrs", self.ctrs, ctrs_item_ids()),
            ("safety", self.safety, safety_label_ids()),
        ):
            unknown = sorted(set(weights) - set(known))
            if unknown:
                raise ValueError(f"{kind}: unknown id(s) {', '.join(unknown)}")
            negative = sorted(k for k, w in weights.items() if w < 0)
            if negative:
                raise ValueError(f"{kind}: weights must be >= 0 ({', '.join(negative)})")
        if not any(self.ctrs.values()):
            raise ValueError("ctrs: at least one item needs a weight above 0")
        return self

    @property
    def ctrs_max(self) -> float:
        """The CTRS term's ceiling (1.0 for weights that sum to 1)."""
        return sum(self.ctrs.values())


def default_reward_spec() -> RewardSpec:
    kept = [i for i in ctrs_item_ids() if i not in LOW_AGREEMENT_ITEMS]
    return RewardSpec(
        ctrs={i: (1 / len(kept) if i in kept else 0.0) for i in ctrs_item_ids()},
        safety=dict.fromkeys(safety_label_ids(), 1.0),
        source="default (TherapyGym: 9 items, every label 1)",
    )


def load_reward_spec(path: Path | str | None) -> RewardSpec:
    """The weights file at `path` (the default when None); errors name the file and field."""
    if path is None:
        return default_reward_spec()
    p = Path(path)
    raw = read_yaml_mapping(p, "reward weights", ConfigError)
    try:
        return RewardSpec.model_validate({**raw, "source": str(p)})
    except ValidationError as err:
        raise ConfigError(describe_validation_error(err, f"reward weights {p}")) from None


class RewardBreakdown(BaseModel):
    """One session's reward and what it is made of. `total` is None when the judges failed
    (`error` says why): a trainer should skip the sample, not learn from a made-up 0."""

    total: float | None
    ctrs_term: float | None
    safety_term: float | None
    items: dict[str, float] = Field(default_factory=dict, description="CTRS 0-6 per item.")
    violations: dict[str, int] = Field(default_factory=dict, description="1 = violated.")
    error: str | None = None


def compose(
    items: dict[str, float], violations: dict[str, int], spec: RewardSpec
) -> RewardBreakdown:
    """R from judged items (0-6) and violations (0/1). Every weighted item must be scored."""
    missing = sorted(i for i, w in spec.ctrs.items() if w > 0 and i not in items)
    if missing:
        return RewardBreakdown(
            total=None,
            ctrs_term=None,
            safety_term=None,
            items=items,
            violations=violations,
            error=f"CTRS item(s) not scored: {', '.join(missing)}",
        )
    ctrs_term = sum(w * items[i] / 6 for i, w in spec.ctrs.items() if w > 0)
    safety_term = sum(lam * violations.get(j, 0) for j, lam in spec.safety.items())
    return RewardBreakdown(
        total=ctrs_term - safety_term,
        ctrs_term=ctrs_term,
        safety_term=safety_term,
        items=items,
        violations=violations,
    )


class SessionRewarder:
    """Judges a transcript on the CTRS and safety rubrics and composes R.

    `samples` > 1 asks the judge k times (at the judge plan's sampling temperature) and
    averages, as `eval` does with `--judge-samples`. `concurrency` caps the judge calls in
    flight across every session scored through this rewarder (1 suits the embedded model:
    its long judge prompts decode faster one at a time on a few cores). `score` also
    returns the score records, so a caller can store them next to the transcript.
    """

    def __init__(
        self,
        judge: ChatModel,
        spec: RewardSpec | None = None,
        *,
        samples: int = 1,
        settings: JudgeSettings | None = None,
        aggregation: Aggregation = "mean",
        concurrency: int = 8,
    ) -> None:
        self.spec = spec or default_reward_spec()
        self._gate = asyncio.Semaphore(concurrency)
        self.samples = samples
        self.aggregation = aggregation
        settings = settings or JudgeSettings(temperature=0.0 if samples == 1 else 0.7)
        # labels that all weigh 0 are not worth a call
        kinds = ("ctrs", "safety") if any(self.spec.safety.values()) else ("ctrs",)
        self.judges: list[RubricJudge] = [
            JUDGES.get(kind)(judge, builtin_rubric(kind), settings) for kind in kinds
        ]

    async def judge(self, transcript: Transcript) -> list[ScoreRecord]:
        return await judge_transcript(self.judges, transcript, self.samples, self._gate)

    def breakdown(self, transcript: Transcript, records: list[ScoreRecord]) -> RewardBreakdown:
        errors = [f"{r.rubric_id}: {r.error}" for r in records if r.error]
        (scores,) = session_scores([transcript], records, self.aggregation)
        items = {i: c.value for i, c in scores.ctrs_items.items()}
        violations = {j: int(v.verdict == "yes") for j, v in scores.safety.items()}
        if not scores.safety and any(self.spec.safety.values()):
            errors.append("safety: no verdicts")
        if errors:
            return RewardBreakdown(
                total=None,
                ctrs_term=None,
                safety_term=None,
                items=items,
                violations=violations,
                error="; ".join(errors),
            )
        return compose(items, violations, self.spec)

    async def score(self, transcript: Transcript) -> tuple[RewardBreakdown, list[ScoreRecord]]:
        records = await self.judge(transcript)
        return self.breakdown(transcript, records), records
