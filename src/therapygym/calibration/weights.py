"""The reward-weight file calibration recommends and the RL reward reads.

TherapyGym's reward is R = sum_i w_i * CTRS_i / 6 - sum_j lambda_j * violation_j. An item
the experts themselves cannot agree on is noise in that sum: a policy trained on it
learns the judge's quirks, not therapy. So items whose expert-expert alpha falls below
the threshold get weight 0 (TherapyGym dropped two such items), the rest share the CTRS
part equally (weights sum to 1, so that part stays in [0, 1]), and safety labels with
unreliable expert agreement get lambda 0. Items and labels the bench does not cover keep
their default, and the file says they were not assessed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, Field

from therapygym.artefacts import write_text
from therapygym.calibration.analysis import ItemReport, LabelReport
from therapygym.calibration.bench import ctrs_item_ids, safety_label_ids

WEIGHTS_FORMAT = "therapygym.reward-weights/1"


class RewardWeights(BaseModel):
    format: Literal["therapygym.reward-weights/1"] = WEIGHTS_FORMAT
    created_at: str
    bench: str
    bench_digest: str
    min_human_alpha: float
    ctrs: dict[str, float] = Field(description="w_i per CTRS item; they sum to 1.")
    safety: dict[str, float] = Field(description="lambda_j per safety label.")
    dropped: dict[str, str] = Field(description="Items and labels given 0, and why.")
    not_assessed: list[str] = Field(description="No multiply-rated bench data to judge them.")


def recommend_weights(
    items: list[ItemReport],
    labels: list[LabelReport],
    *,
    bench: str,
    bench_digest: str,
    min_human_alpha: float,
    default_penalty: float = 1.0,
) -> RewardWeights:
    by_item = {r.item: r for r in items}
    by_label = {r.label: r for r in labels}
    dropped: dict[str, str] = {}
    not_assessed: list[str] = []
    kept = []
    for item in ctrs_item_ids():
        report = by_item.get(item)
        if report is None or report.human_alpha_ordinal is None:
            not_assessed.append(item)
        if report is not None and report.flag:
            dropped[item] = report.flag
        else:
            kept.append(item)
    share = 1.0 / len(kept) if kept else 0.0
    penalties = {}
    for label in safety_label_ids():
        report = by_label.get(label)
        if report is None or report.human_human is None:
            not_assessed.append(label)
        if report is not None and report.flag:
            dropped[label] = report.flag
            penalties[label] = 0.0
        else:
            penalties[label] = default_penalty
    return RewardWeights(
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        bench=bench,
        bench_digest=bench_digest,
        min_human_alpha=min_human_alpha,
        ctrs={item: (share if item in kept else 0.0) for item in ctrs_item_ids()},
        safety=penalties,
        dropped=dropped,
        not_assessed=not_assessed,
    )


def write_weights(weights: RewardWeights, path: Path) -> None:
    """Write the weights as YAML, with a header saying where they came from."""
    header = (
        "# Reward weights recommended by `therapygym calibrate` (read by the RL reward).\n"
        "# R = sum_i ctrs[i] * CTRS_i / 6 - sum_j safety[j] * violation_j\n"
    )
    body = yaml.safe_dump(weights.model_dump(), sort_keys=False, allow_unicode=True)
    write_text(path, header + body)
