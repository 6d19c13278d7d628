"""The calibration report: what `calibrate` computes, writes as calibration.json and renders.

Its own module because both the command that builds it (`calibrate`) and the views of it
(`render`, the HTML report) need the type, and `calibrate` writes the rendered section:
with the type here, imports run one way, calibrate -> render -> report.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel

from therapygym.calibration.analysis import CheckReport, ItemReport, LabelReport, Separation
from therapygym.calibration.recalibrate import Recalibration
from therapygym.calibration.weights import RewardWeights

REPORT_FORMAT = "therapygym.calibration/1"


class JudgeInfo(BaseModel):
    """Which judges produced the scores, on which transcripts, and what it cost."""

    run_id: str
    specs: list[str]
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
    format: Literal["therapygym.calibration/1"] = REPORT_FORMAT
    bench: dict[str, object]
    judge: JudgeInfo | None
    settings: dict[str, object]
    items: list[ItemReport]
    total: ItemReport | None
    labels: list[LabelReport]
    checks: CheckReport | None
    separation: Separation | None
    recalibration: Recalibration | None
    weights: RewardWeights
    notes: list[str]
