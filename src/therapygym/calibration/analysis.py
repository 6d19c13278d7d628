"""From a bench and a judge's scores to the agreement an expert reviewer asks for.

For every CTRS item (and the total) three comparisons, each with bootstrap CIs that
resample dialogues:

* human vs human: the first two experts of each multiply-rated dialogue -- the ceiling;
  plus Krippendorff's alpha over all experts, which decides whether the item is reliable
  enough to train on;
* judge vs human: the judge's score against every expert rating of the dialogue;
* judge vs mean of humans: against the experts' mean. A mean of several experts is more
  reliable than one, so this can exceed the single-rater ceiling; it sits beside it,
  not in place of it.

Safety labels get the same pairings with binary statistics; check questions (Moore et
al.-style) compare the bench's own model raters with the experts; expert quality labels
(AnnoMI) give the judge's separation AUC.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

import numpy as np
from pydantic import BaseModel, BeforeValidator, PlainSerializer

from therapygym.calibration.bench import CTRS_SCALE, Bench, Dialogue
from therapygym.calibration.stats import (
    ItemAgreement,
    LabelAgreement,
    item_agreement,
    label_agreement,
    multi_rater_alpha,
    separation_auc,
)
from therapygym.stats import Estimate, bootstrap, unit_statistic

TOTAL = "total"
T = TypeVar("T")


def _to_report(ci: Estimate) -> dict[str, Any]:
    return {
        "point": ci.mean,
        "low": ci.low,
        "high": ci.high,
        "level": ci.level,
        "n_resamples": ci.n_resamples,
        "n_valid": ci.n_valid,
    }


def _from_report(data: Any) -> Any:
    if isinstance(data, Mapping) and "point" in data:
        return Estimate(
            mean=data["point"],
            low=data["low"],
            high=data["high"],
            n=0,
            level=data["level"],
            n_resamples=data["n_resamples"],
            n_valid=data["n_valid"],
        )
    return data


ReportCI = Annotated[Estimate, PlainSerializer(_to_report), BeforeValidator(_from_report)]
"""An `Estimate` as calibration.json has always written it: `point` for the mean, the
bootstrap's details, no `n` (each comparison gives its `n_dialogues`; read back, n is 0)."""


@dataclass(frozen=True)
class Settings:
    """How the statistics are computed; recorded in every report."""

    resamples: int = 1000
    seed: int = 0
    level: float = 0.95
    min_human_alpha: float = 0.4


@dataclass
class JudgeScores:
    """A judge's (or panel's) scores by bench dialogue id; None where it gave none."""

    ctrs: dict[str, dict[str, float]] = field(default_factory=dict)
    safety: dict[str, dict[str, bool | None]] = field(default_factory=dict)
    check: dict[str, bool] = field(default_factory=dict)

    def ctrs_total(self, dialogue_id: str, items: Sequence[str]) -> float | None:
        scores = self.ctrs.get(dialogue_id, {})
        if not items or any(i not in scores for i in items):
            return None
        return float(sum(scores[i] for i in items))


class Comparison(BaseModel):
    """One pairing of raters on one item: statistics and their bootstrap CIs."""

    n_dialogues: int
    stats: ItemAgreement
    ci: dict[str, ReportCI]


class ItemReport(BaseModel):
    item: str
    scale: tuple[int, int]
    human_alpha_ordinal: ReportCI | None
    human_human: Comparison | None
    judge_vs_human: Comparison | None
    judge_vs_mean_human: Comparison | None
    flag: str | None = None


class LabelComparison(BaseModel):
    n_dialogues: int
    stats: LabelAgreement
    ci: dict[str, ReportCI]


class LabelReport(BaseModel):
    label: str
    human_human: LabelComparison | None
    judge_vs_human: LabelComparison | None
    flag: str | None = None


class CheckReport(BaseModel):
    """Answers to check questions: expert vs expert, the judge and each of the bench's model
    raters vs the experts, and how often each answered as an appropriate reply would earn."""

    human_human: LabelComparison | None
    judge_vs_human: LabelComparison | None
    raters_vs_human: dict[str, LabelComparison]
    appropriate_rate: dict[str, float]


class Separation(BaseModel):
    """Whether the judge's score ranks expert-labelled high-quality dialogues above low."""

    score: str
    n_high: int
    n_low: int
    auc: ReportCI
    item_auc: dict[str, float]


Pair = tuple[float, float]
Unit = list[Pair]  # the pairs one dialogue contributes


def _bootstrap(
    metric: Callable[[list[T]], Mapping[str, float]], units: list[T], settings: Settings
) -> dict[str, Estimate]:
    """Percentile CIs of `metric`'s statistics, resampling whole dialogues (`units`)."""
    return bootstrap(
        unit_statistic(metric, units),
        len(units),
        method="percentile",
        n_resamples=settings.resamples,
        seed=settings.seed,
        level=settings.level,
    )


def _ci_fields(stats: BaseModel) -> dict[str, float]:
    """The statistics worth an interval (the float fields; counts are not)."""
    return {k: v for k, v in stats.model_dump().items() if isinstance(v, float)}


def _paired(
    units: list[Unit],
    agreement: Callable[[list[float], list[float]], BaseModel],
    settings: Settings,
) -> dict[str, Any] | None:
    """`agreement` over every pair of every dialogue, and its CIs resampling dialogues."""
    units = [u for u in units if u]
    if not units:
        return None

    def stats(rs: list[Unit]) -> BaseModel:
        pairs = [p for u in rs for p in u]
        return agreement([p[0] for p in pairs], [p[1] for p in pairs])

    return {
        "n_dialogues": len(units),
        "stats": stats(units),
        "ci": _bootstrap(lambda rs: _ci_fields(stats(rs)), units, settings),
    }


def _compare(
    units: list[Unit], scale: tuple[int, int], integer: bool, settings: Settings
) -> Comparison | None:
    fields = _paired(
        units, lambda a, b: item_agreement(a, b, scale=scale, integer=integer), settings
    )
    return Comparison(**fields) if fields else None


def _compare_labels(units: list[Unit], settings: Settings) -> LabelComparison | None:
    fields = _paired(units, label_agreement, settings)
    return LabelComparison(**fields) if fields else None


def _is_integral(values: Sequence[float]) -> bool:
    return all(float(v).is_integer() for v in values)


# ---------------------------------------------------------------- CTRS items


def _human_values(d: Dialogue, value: Callable[[Any], float | None]) -> list[tuple[str, float]]:
    """(rater, value) for the dialogue's experts who gave one, first rating per rater."""
    out: dict[str, float] = {}
    for r in d.human_ratings():
        v = value(r)
        if v is not None and r.rater not in out:
            out[r.rater] = float(v)
    return list(out.items())


def _item_report(
    bench: Bench,
    item: str,
    scale: tuple[int, int],
    human_value: Callable[[Any], float | None],
    judge_value: Callable[[str], float | None] | None,
    settings: Settings,
) -> ItemReport:
    dialogues = list(bench.dialogues.values())
    humans = {d.id: _human_values(d, human_value) for d in dialogues}
    raters = bench.raters("human")
    multi = [d for d in dialogues if len(humans[d.id]) >= 2]

    def alpha(ds: list[Dialogue]) -> float:
        matrix = [[dict(humans[d.id]).get(r, math.nan) for d in ds] for r in raters]
        return multi_rater_alpha(matrix, "ordinal")

    human_alpha = (
        _bootstrap(lambda ds: {"alpha": alpha(ds)}, multi, settings)["alpha"] if multi else None
    )
    human_human = _compare(
        [[(humans[d.id][0][1], humans[d.id][1][1])] for d in multi], scale, True, settings
    )
    judge_vs_human = judge_vs_mean = None
    if judge_value is not None:
        judged = {d.id: judge_value(d.id) for d in dialogues}
        rated = [d for d in dialogues if judged[d.id] is not None and humans[d.id]]
        judge_integer = _is_integral([judged[d.id] for d in rated])  # type: ignore[misc]
        judge_vs_human = _compare(
            [[(judged[d.id], h) for _, h in humans[d.id]] for d in rated],  # type: ignore[misc]
            scale,
            judge_integer,
            settings,
        )
        means = {d.id: float(np.mean([h for _, h in humans[d.id]])) for d in rated}
        judge_vs_mean = _compare(
            [[(judged[d.id], means[d.id])] for d in rated],  # type: ignore[misc]
            scale,
            judge_integer and _is_integral(list(means.values())),
            settings,
        )
    flag = None
    alpha_point = human_alpha.mean if human_alpha else None
    if alpha_point is not None and alpha_point < settings.min_human_alpha:
        flag = (
            f"expert-expert alpha {alpha_point:.2f} is below "
            f"{settings.min_human_alpha:.2f}: too unreliable to calibrate or reward on"
        )
    return ItemReport(
        item=item,
        scale=scale,
        human_alpha_ordinal=human_alpha,
        human_human=human_human,
        judge_vs_human=judge_vs_human,
        judge_vs_mean_human=judge_vs_mean,
        flag=flag,
    )


def item_reports(
    bench: Bench, judge: JudgeScores | None, settings: Settings
) -> tuple[list[ItemReport], ItemReport | None]:
    """One report per CTRS item the experts scored, and one for the total when the experts
    scored every item (the total is only defined for complete ratings)."""
    items = bench.ctrs_items()
    reports = [
        _item_report(
            bench,
            item,
            CTRS_SCALE,
            lambda r, item=item: r.ctrs.get(item),
            (lambda d, item=item: judge.ctrs.get(d, {}).get(item)) if judge else None,
            settings,
        )
        for item in items
    ]
    total = None
    if items:

        def human_total(r: Any) -> float | None:
            values = [r.ctrs.get(i) for i in items]
            return None if any(v is None for v in values) else float(sum(values))

        total = _item_report(
            bench,
            TOTAL,
            (CTRS_SCALE[0] * len(items), CTRS_SCALE[1] * len(items)),
            human_total,
            (lambda d: judge.ctrs_total(d, items)) if judge else None,
            settings,
        )
    return reports, total


# ---------------------------------------------------------------- safety labels


def label_reports(bench: Bench, judge: JudgeScores | None, settings: Settings) -> list[LabelReport]:
    """Per safety label: expert vs expert (first two) and judge vs every expert; a label
    that is not applicable (null) on either side drops out of that pair."""
    out = []
    for label in bench.safety_labels():
        dialogues = list(bench.dialogues.values())
        humans = {
            d.id: _human_values(d, lambda r, label=label: r.safety.get(label)) for d in dialogues
        }
        multi = [d for d in dialogues if len(humans[d.id]) >= 2]
        human_human = _compare_labels(
            [[(humans[d.id][0][1], humans[d.id][1][1])] for d in multi], settings
        )
        judge_vs_human = None
        if judge is not None:
            judged = {d.id: judge.safety.get(d.id, {}).get(label) for d in dialogues}
            judge_vs_human = _compare_labels(
                [
                    [(float(judged[d.id]), h) for _, h in humans[d.id]]  # type: ignore[arg-type]
                    for d in dialogues
                    if judged[d.id] is not None
                ],
                settings,
            )
        flag = None
        kappa = human_human.stats.cohen_kappa if human_human else math.nan
        if kappa < settings.min_human_alpha:  # nan: False
            flag = f"expert-expert kappa {kappa:.2f} is below {settings.min_human_alpha:.2f}"
        out.append(
            LabelReport(
                label=label, human_human=human_human, judge_vs_human=judge_vs_human, flag=flag
            )
        )
    return out


# ---------------------------------------------------------------- check questions


JUDGE = "judge"


def check_report(bench: Bench, judge: JudgeScores | None, settings: Settings) -> CheckReport | None:
    """Check-question answers, when the bench has them (e.g. the Moore et al. import); the
    judge's appropriate-answer rate is listed under "judge"."""
    dialogues = [d for d in bench.dialogues.values() if d.check is not None]
    if not dialogues:
        return None

    def answers(d: Dialogue, kind: str) -> list[tuple[str, float]]:
        out: dict[str, float] = {}
        for r in d.ratings:
            if r.rater_kind == kind and r.check_answer is not None and r.rater not in out:
                out[r.rater] = float(r.check_answer)
        return list(out.items())

    humans = {d.id: answers(d, "human") for d in dialogues}
    human_human = _compare_labels(
        [[(humans[d.id][0][1], humans[d.id][1][1])] for d in dialogues if len(humans[d.id]) >= 2],
        settings,
    )
    raters_vs_human = {}
    for rater in bench.raters("model"):
        units = []
        for d in dialogues:
            mine = dict(answers(d, "model")).get(rater)
            if mine is not None:
                units.append([(mine, h) for _, h in humans[d.id]])
        if comparison := _compare_labels(units, settings):
            raters_vs_human[rater] = comparison
    judge_vs_human = None
    if judge is not None:
        judge_vs_human = _compare_labels(
            [
                [(float(judge.check[d.id]), h) for _, h in humans[d.id]]
                for d in dialogues
                if d.id in judge.check
            ],
            settings,
        )
    appropriate: dict[str, list[bool]] = {}
    for d in dialogues:
        expected = d.check.appropriate_answer  # type: ignore[union-attr]
        if expected is None:
            continue
        for r in d.ratings:
            if r.check_answer is not None:
                appropriate.setdefault(r.rater, []).append(r.check_answer == expected)
        if judge is not None and d.id in judge.check:
            appropriate.setdefault(JUDGE, []).append(judge.check[d.id] == expected)
    return CheckReport(
        human_human=human_human,
        judge_vs_human=judge_vs_human,
        raters_vs_human=raters_vs_human,
        appropriate_rate={k: float(np.mean(v)) for k, v in sorted(appropriate.items())},
    )


# ---------------------------------------------------------------- quality separation


def separation(bench: Bench, judge: JudgeScores | None, settings: Settings) -> Separation | None:
    """AUC of the judge's normalised CTRS mean for expert high vs low quality labels.

    The mean over the items the judge scored (0-6) is the score; every item's own AUC is
    given too, since a CBT rubric's structure items (agenda, homework) need not transfer
    to another modality's quality labels while its relational items may.
    """
    if judge is None:
        return None
    labelled = [(d.id, d.quality()) for d in bench.dialogues.values()]
    labelled = [(i, q) for i, q in labelled if q is not None and judge.ctrs.get(i)]
    if not labelled:
        return None
    ids = [i for i, _ in labelled]
    high = [q == "high" for _, q in labelled]
    mean_score = {i: float(np.mean(list(judge.ctrs[i].values()))) for i in ids}
    units = list(zip(ids, high, strict=True))
    auc = _bootstrap(
        lambda rs: {"auc": separation_auc([mean_score[i] for i, _ in rs], [h for _, h in rs])},
        units,
        settings,
    )["auc"]
    items = sorted({k for i in ids for k in judge.ctrs[i]})
    return Separation(
        score="mean of the judge's CTRS items (0-6)",
        n_high=sum(high),
        n_low=len(high) - sum(high),
        auc=auc,
        item_auc={
            item: separation_auc([judge.ctrs[i].get(item) for i in ids], high) for item in items
        },
    )
