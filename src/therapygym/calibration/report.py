"""The calibration report: what `calibrate` computes, writes as calibration.json and renders.

Its own module because both the command that builds it (`calibrate`) and the views of it
(`render`, the HTML report) need the type, and `calibrate` writes the rendered section:
with the type here, imports run one way, calibrate -> render -> report.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from therapygym.calibration.analysis import CheckReport, ItemReport, LabelReport, Separation
from therapygym.calibration.mi_analysis import MIReport
from therapygym.calibration.recalibrate import Recalibration
from therapygym.calibration.weights import RewardWeights

REPORT_FORMAT = "therapygym.calibration/2"
"""/2: the expert-expert ceiling keeps rater identity (`expert_pairs`, `judge_vs_experts`,
`expert_vs_rest`, `judge_vs_rest` in place of /1's `human_human`, the first two experts
of each dialogue), free criteria have their own `criteria` list, and `weights` is null
when no CTRS item qualifies for one."""


class JudgeInfo(BaseModel):
    """Which judges produced the scores, on which transcripts, and what it cost."""

    run_id: str
    specs: list[str]
    # the specs that are the embedded 135M model (as judging recorded them): the report
    # says their agreement carries no clinical meaning
    embedded: list[str] = []
    rubrics: list[dict[str, str]]
    dialogues: int
    truncated_dialogues: int
    max_turns: int | None
    units: int
    failed_units: int
    errors: list[str]
    prompt_tokens: int
    completion_tokens: int


class CalibrationReport(BaseModel):
    """Everything `calibrate` measured. `items` and `total` are CTRS; `criteria` are the
    bench's own rubric (e.g. MindEval's), reported for expert agreement only: they are not
    CTRS items, so they never enter the recalibration or the reward weights."""

    format: Literal["therapygym.calibration/2"] = REPORT_FORMAT
    bench: dict[str, object]
    judge: JudgeInfo | None
    settings: dict[str, object]
    items: list[ItemReport]
    total: ItemReport | None
    criteria: list[ItemReport]
    labels: list[LabelReport]
    checks: CheckReport | None
    separation: Separation | None
    recalibration: Recalibration | None
    weights: RewardWeights | None
    notes: list[str]
    # MI behaviour codes and global ratings (absent from reports written before it existed)
    mi: MIReport | None = None
