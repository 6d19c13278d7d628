"""Mapping a judge's scale onto the experts': fit on one split, judge on the other.

A judge can rank dialogues like the experts and still sit a point high on every item (a
lenient judge: ICC(3,1) high, ICC(2,1) low). A monotone map fitted on half the dialogues
removes such offsets and compressions; agreement is then reported only on the held-out
half, so the improvement is not the fit describing its own data. The fitted maps are part
of the report, so a user can apply them to new scores (`ScaleMap.apply`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel
from scipy.stats import linregress
from sklearn.isotonic import IsotonicRegression

from therapygym.calibration.stats import ItemAgreement, item_agreement

Method = Literal["isotonic", "linear"]
MIN_FIT, MIN_TEST = 6, 4


class ScaleMap(BaseModel):
    """A judge-to-expert map. Isotonic maps are piecewise linear through (`x`, `y`) and flat
    beyond the ends; linear maps are `slope * score + intercept`; both clip to the scale."""

    method: Method
    scale: tuple[int, int]
    x: list[float] = []
    y: list[float] = []
    slope: float = 0.0
    intercept: float = 0.0

    def apply(self, scores: Sequence[float] | np.ndarray) -> np.ndarray:
        values = np.asarray(scores, dtype=float)
        if self.method == "isotonic":
            mapped = np.interp(values, self.x, self.y)
        else:
            mapped = values * self.slope + self.intercept
        return np.clip(mapped, *self.scale)


class ItemMap(BaseModel):
    """One item's fitted map, with agreement on the held-out dialogues before and after."""

    item: str
    map: ScaleMap
    n_fit: int
    n_test: int
    held_out_before: ItemAgreement
    held_out_after: ItemAgreement


class Recalibration(BaseModel):
    method: Method
    fit_fraction: float
    seed: int
    items: list[ItemMap]
    skipped: dict[str, str]


def split(ids: Sequence[str], fit_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """A seeded split of dialogue ids into fit and held-out parts (sorted first, so the
    split depends on the ids, not on the order they arrived in)."""
    order = sorted(ids)
    rng = np.random.default_rng(seed)
    rng.shuffle(order)
    cut = round(len(order) * fit_fraction)
    return order[:cut], order[cut:]


def fit_item(
    item: str,
    judge: dict[str, float],
    expert: dict[str, float],
    *,
    scale: tuple[int, int],
    method: Method,
    fit_ids: Sequence[str],
    test_ids: Sequence[str],
) -> ItemMap:
    """Fit judge -> expert (the experts' mean per dialogue) on `fit_ids`, report on `test_ids`."""
    fx = np.array([judge[i] for i in fit_ids], dtype=float)
    fy = np.array([expert[i] for i in fit_ids], dtype=float)
    tx = np.array([judge[i] for i in test_ids], dtype=float)
    ty = np.array([expert[i] for i in test_ids], dtype=float)
    lo, hi = scale
    if method == "isotonic":
        model = IsotonicRegression(y_min=lo, y_max=hi, out_of_bounds="clip").fit(fx, fy)
        fitted = ScaleMap(
            method=method,
            scale=scale,
            x=[float(v) for v in model.X_thresholds_],
            y=[float(v) for v in model.y_thresholds_],
        )
    elif np.ptp(fx) == 0:  # a judge that gave one score: map it to the experts' mean
        fitted = ScaleMap(method=method, scale=scale, intercept=float(fy.mean()))
    else:
        line = linregress(fx, fy)
        fitted = ScaleMap(
            method=method, scale=scale, slope=float(line.slope), intercept=float(line.intercept)
        )
    return ItemMap(
        item=item,
        map=fitted,
        n_fit=len(fit_ids),
        n_test=len(test_ids),
        held_out_before=item_agreement(tx, ty, scale=scale, integer=False),
        held_out_after=item_agreement(fitted.apply(tx), ty, scale=scale, integer=False),
    )


def recalibrate(
    judge: dict[str, dict[str, float]],
    expert: dict[str, dict[str, float]],
    *,
    scales: dict[str, tuple[int, int]],
    method: Method = "isotonic",
    fit_fraction: float = 0.5,
    seed: int = 0,
) -> Recalibration:
    """Per item, fit on a split of the dialogues that have both a judge and an expert score.

    `judge[item][dialogue]` and `expert[item][dialogue]` (the experts' mean). Items with too
    few dialogues for a fit and a test are listed in `skipped` with the reason.
    """
    if not 0.0 < fit_fraction < 1.0:
        raise ValueError(f"fit_fraction must be in (0, 1), got {fit_fraction}")
    items, skipped = [], {}
    for item, scale in scales.items():
        ids = sorted(set(judge.get(item, {})) & set(expert.get(item, {})))
        fit_ids, test_ids = split(ids, fit_fraction, seed)
        if len(fit_ids) < MIN_FIT or len(test_ids) < MIN_TEST:
            skipped[item] = (
                f"{len(ids)} dialogues with judge and expert scores; a fit needs "
                f"{MIN_FIT} and a held-out test {MIN_TEST}"
            )
            continue
        items.append(
            fit_item(
                item,
                judge[item],
                expert[item],
                scale=scale,
                method=method,
                fit_ids=fit_ids,
                test_ids=test_ids,
            )
        )
    return Recalibration(
        method=method, fit_fraction=fit_fraction, seed=seed, items=items, skipped=skipped
    )
