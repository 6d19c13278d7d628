"""The reward-weight file calibration recommends and the RL reward reads.

TherapyGym's reward is R = sum_i w_i * CTRS_i / 6 - sum_j lambda_j * violation_j. An item
the experts themselves cannot agree on is noise in that sum: a policy trained on it
learns the judge's quirks, not therapy. So items whose expert-expert alpha falls below
the threshold get weight 0 (TherapyGym dropped two such items), and safety labels with
unreliable expert agreement get lambda 0.

Only items the bench shows to be reliable share the CTRS part (equally; the weights sum
to 1, so that part stays in [0, 1]). An item the bench did not rate, or whose reliability
it cannot measure (no dialogue rated by two experts), gets 0 and is listed with the
reason: a bench mapped onto some CTRS ids once put all the weight on an item it never
rated, which rewards a judge's score that no expert ever checked. A safety label the
bench cannot assess keeps its default penalty instead, since penalising a violation
errs on the safe side. When no item qualifies there is no file to recommend (the RL
reward refuses all-zero CTRS weights): `recommend_weights` returns None and says why.
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
NO_WEIGHTS = (
    "no reward-weight file: no CTRS item has reliable expert-expert agreement on this bench "
    "(none rated by two experts, or every one below the alpha threshold); train with the "
    "default weights, or calibrate on a bench whose experts rate CTRS items"
)


class RewardWeights(BaseModel):
    format: Literal["therapygym.reward-weights/1"] = WEIGHTS_FORMAT
    created_at: str
    bench: str
    bench_digest: str
    min_human_alpha: float
    ctrs: dict[str, float] = Field(description="w_i per CTRS item; they sum to 1.")
    safety: dict[str, float] = Field(description="lambda_j per safety label.")
    dropped: dict[str, str] = Field(description="Items and labels given 0, and why.")
    not_assessed: list[str] = Field(
        description="Not rated by two experts on any dialogue: CTRS items get 0 (and are "
        "under `dropped`), safety labels keep the default penalty."
    )


def _unassessed_reason(report: ItemReport | None) -> str | None:
    """Why the bench cannot vouch for an item, or None when it can."""
    if report is None:
        return "not rated by the bench's experts: never weighted"
    alpha = report.human_alpha_ordinal
    if alpha is None:
        return "no dialogue rated by two experts, so its reliability is unknown: not weighted"
    if alpha.mean is None:
        return "expert-expert alpha undefined (no variation in the ratings): not weighted"
    return None


def recommend_weights(
    items: list[ItemReport],
    labels: list[LabelReport],
    *,
    bench: str,
    bench_digest: str,
    min_human_alpha: float,
    default_penalty: float = 1.0,
) -> RewardWeights | None:
    """The weights, or None when no CTRS item qualifies for one (`NO_WEIGHTS` says so).

    `items` are CTRS item reports only (a bench's free criteria are not CTRS items)."""
    by_item = {r.item: r for r in items}
    by_label = {r.label: r for r in labels}
    dropped: dict[str, str] = {}
    not_assessed: list[str] = []
    kept = []
    for item in ctrs_item_ids():
        report = by_item.get(item)
        reason = _unassessed_reason(report)
        if reason is not None:
            not_assessed.append(item)
            dropped[item] = reason
        elif report is not None and report.flag:
            dropped[item] = report.flag
        else:
            kept.append(item)
    if not kept:
        return None
    share = 1.0 / len(kept)
    penalties = {}
    for label in safety_label_ids():
        report = by_label.get(label)
        if report is None or report.expert_pairs is None:
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
