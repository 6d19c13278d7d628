"""From a bench and a judge's scores to the agreement an expert reviewer asks for.

For every CTRS item (and the total), and every free criterion of the bench's own rubric,
comparisons with bootstrap CIs that resample dialogues:

* the ceiling, expert against expert with rater identity kept: every pair of experts on
  the dialogues both rated, and the mean over the pairs; Krippendorff's alpha over all
  experts decides whether the item is reliable enough to train on;
* judge vs each expert, and the mean over the experts (read beside the pairwise mean);
* leave one out: each expert, and the judge, against the mean of the *other* experts on
  the same dialogues, so the judge is held to exactly what a held-out expert is held to;
* judge vs human: the judge's score against every expert rating of the dialogue, pooled;
* judge vs mean of humans: against all the experts' mean. A mean of several experts is
  more reliable than one, so this can exceed the single-rater ceiling; it sits beside it,
  not in place of it.

No result depends on the order of the bench's lines: dialogues are taken in id order and
raters in name order everywhere (an earlier "first two experts of each dialogue" ceiling
moved with line order alone).

Safety labels get expert pairs and judge-vs-expert comparisons with binary statistics;
check questions (Moore et al.-style) compare the bench's own model raters with the
experts; expert quality labels (AnnoMI) give the judge's separation AUC.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Generic, NamedTuple, TypeVar

import numpy as np
from pydantic import BaseModel, BeforeValidator, PlainSerializer

from therapygym.calibration.bench import CTRS_SCALE, Bench, BenchRating, Dialogue
from therapygym.calibration.stats import (
    ITEM_HEADLINE,
    LABEL_HEADLINE,
    ItemAgreement,
    LabelAgreement,
    item_agreement,
    item_headline,
    label_agreement,
    label_headline,
    multi_rater_alpha,
    separation_auc,
)
from therapygym.stats import Estimate, bootstrap, unit_statistic

TOTAL = "total"
T = TypeVar("T")
S = TypeVar("S", ItemAgreement, LabelAgreement)


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
    # A pair of raters (or a rater and the rest) on fewer shared dialogues is listed but
    # left out of the mean over pairs: Spearman's rho on two or three dialogues is +-1 or
    # close, noise that an unweighted mean would give a whole pair's say.
    min_shared_dialogues: int = 5


@dataclass(frozen=True)
class MIScores:
    """A judge's (or panel's) MI coding of one bench dialogue: a code per therapist turn,
    by the turn's position in the bench transcript, and the global ratings."""

    codes: dict[int, str]
    global_ratings: dict[str, float]


@dataclass
class JudgeScores:
    """A judge's (or panel's) scores by bench dialogue id; None where it gave none."""

    ctrs: dict[str, dict[str, float]] = field(default_factory=dict)
    safety: dict[str, dict[str, bool | None]] = field(default_factory=dict)
    check: dict[str, bool] = field(default_factory=dict)
    mi: dict[str, MIScores] = field(default_factory=dict)

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


class RaterAgreement(BaseModel, Generic[S]):
    """One comparison with rater identity kept, on the dialogues both sides scored.

    `raters` names who is compared: two experts for a pair (in name order; `mean_bias` is
    the first minus the second), one expert for the judge against that expert or for that
    expert (or the judge) against the mean of the others. `in_mean` says whether it shared
    enough dialogues (`Settings.min_shared_dialogues`) to count in the mean over raters.
    """

    raters: tuple[str, ...]
    n_dialogues: int
    in_mean: bool
    stats: S


class Agreements(BaseModel, Generic[S]):
    """Comparisons of one kind, one per expert pair or per expert, and their mean.

    `mean[stat]` is the unweighted mean of a headline statistic (`ITEM_HEADLINE`,
    `LABEL_HEADLINE`) over the comparisons in the mean where it is defined, `counted[stat]`
    of them, among `n_raters` experts. Its interval resamples dialogues and recomputes
    every comparison on the same resample, since pairs share dialogues and raters.
    """

    n_raters: int
    mean: dict[str, ReportCI]
    counted: dict[str, int]
    comparisons: list[RaterAgreement[S]]


class ItemReport(BaseModel):
    """One CTRS item, the CTRS total or a free criterion: the experts' agreement with each
    other (the ceiling) and the judge's with them, each pairing keeping rater identity."""

    item: str
    scale: tuple[int, int]
    human_alpha_ordinal: ReportCI | None
    expert_pairs: Agreements[ItemAgreement] | None
    judge_vs_human: Comparison | None
    judge_vs_mean_human: Comparison | None
    judge_vs_experts: Agreements[ItemAgreement] | None
    expert_vs_rest: Agreements[ItemAgreement] | None
    judge_vs_rest: Agreements[ItemAgreement] | None
    flag: str | None = None


class LabelComparison(BaseModel):
    n_dialogues: int
    stats: LabelAgreement
    ci: dict[str, ReportCI]


class LabelReport(BaseModel):
    label: str
    expert_pairs: Agreements[LabelAgreement] | None
    judge_vs_human: LabelComparison | None
    judge_vs_experts: Agreements[LabelAgreement] | None
    flag: str | None = None


class CheckReport(BaseModel):
    """Answers to check questions: expert vs expert (every pair), the judge and each of the
    bench's model raters vs the experts, and how often each answered as an appropriate reply
    would earn."""

    expert_pairs: Agreements[LabelAgreement] | None
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


# ---------------------------------------------------------------- ratings with identity


def _dialogues(bench: Bench) -> list[Dialogue]:
    """The bench's dialogues in id order: bootstrap draws index this list, so the order of
    the file's lines must not decide which dialogues a seed draws."""
    return sorted(bench.dialogues.values(), key=lambda d: d.id)


@dataclass(frozen=True)
class _Ratings:
    """One criterion's ratings as a dialogues x raters table (nan: not rated), dialogues in
    id order and raters in name order, with the judge's scores as a last column (nan
    throughout without a judge). Every comparison reads this table, so none can depend on
    the order in which a bench lists its lines or a dialogue's raters."""

    raters: list[str]
    table: np.ndarray
    has_judge: bool

    @property
    def judge(self) -> int:
        """The judge's column."""
        return len(self.raters)

    @property
    def experts(self) -> np.ndarray:
        return self.table[:, : len(self.raters)]


def _ratings(
    dialogues: Sequence[Dialogue],
    value: Callable[[BenchRating], float | bool | None],
    judge_value: Callable[[str], float | bool | None] | None,
) -> _Ratings:
    """The experts' `value`s (scored human ratings only; model raters are never experts)
    and the judge's, as a `_Ratings` table; raters who gave no value are left out."""
    given: list[dict[str, float]] = []
    for d in dialogues:
        mine: dict[str, float] = {}
        for r in d.human_ratings():
            v = value(r)
            if v is not None:
                mine.setdefault(r.rater, float(v))
        given.append(mine)
    raters = sorted({rater for g in given for rater in g})
    table = np.full((len(dialogues), len(raters) + 1), math.nan)
    for row, (d, mine) in enumerate(zip(dialogues, given, strict=True)):
        for col, rater in enumerate(raters):
            table[row, col] = mine.get(rater, math.nan)
        judged = judge_value(d.id) if judge_value is not None else None
        if judged is not None:
            table[row, -1] = float(judged)
    return _Ratings(raters=raters, table=table, has_judge=judge_value is not None)


Pick = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class _Pairing:
    """Who is compared (`raters`), how to read the two aligned vectors from a sample of the
    table's rows (`pick`), and whether both are whole numbers (a mean of experts is not)."""

    raters: tuple[str, ...]
    pick: Pick
    integer: bool


def _expert_pairs(r: _Ratings) -> list[_Pairing]:
    return [
        _Pairing((a, b), lambda rows, i=i, j=j: (rows[:, i], rows[:, j]), True)
        for (i, a), (j, b) in itertools.combinations(enumerate(r.raters), 2)
    ]


def _judge_vs_each(r: _Ratings, integer: bool) -> list[_Pairing]:
    return [
        _Pairing((a,), lambda rows, i=i: (rows[:, r.judge], rows[:, i]), integer)
        for i, a in enumerate(r.raters)
    ]


def _rest_mean(rows: np.ndarray, i: int, r: _Ratings) -> np.ndarray:
    """Per row, the mean of the experts other than expert `i`, where `i` and at least one
    other rated and, with a judge, the judge scored too (so that expert `i` and the judge
    are held to the same reference on the same dialogues); nan elsewhere."""
    others = np.delete(rows[:, : len(r.raters)], i, axis=1)
    count = (~np.isnan(others)).sum(axis=1)
    keep = (count > 0) & ~np.isnan(rows[:, i])
    if r.has_judge:
        keep &= ~np.isnan(rows[:, r.judge])
    return np.where(keep, np.nansum(others, axis=1) / np.maximum(count, 1), math.nan)


def _vs_rest(r: _Ratings, judge: bool) -> list[_Pairing]:
    """Each expert (or, with `judge`, the judge in that expert's place) against the mean of
    the other experts: leave one out. None with two experts, where "the others" is the
    other expert and the comparisons are the pair's (and the judge's against each)."""
    if len(r.raters) < 3:
        return []
    return [
        _Pairing(
            (a,),
            lambda rows, i=i: (rows[:, r.judge if judge else i], _rest_mean(rows, i, r)),
            False,
        )
        for i, a in enumerate(r.raters)
    ]


def _mean_defined(values: Sequence[float]) -> float:
    """The mean of the finite values (a statistic undefined for one pair, e.g. a rater who
    gave one score throughout, leaves that pair out); nan when none is."""
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def _agreements(
    r: _Ratings,
    pairings: list[_Pairing],
    stats_type: type[S],
    compare: Callable[[np.ndarray, np.ndarray, bool], S],
    headline: Callable[[np.ndarray, np.ndarray], dict[str, float]],
    names: tuple[str, ...],
    settings: Settings,
) -> Agreements[S] | None:
    """Every pairing's full statistics on the dialogues it shares, and the mean of the
    headline ones over the pairings that share `settings.min_shared_dialogues` or more,
    with a CI resampling the dialogues any of those pairings uses; None when no pairing
    shares a dialogue."""
    listed: list[RaterAgreement[S]] = []
    used: list[_Pairing] = []
    relevant = np.zeros(len(r.table), dtype=bool)
    for p in pairings:
        x, y = p.pick(r.table)
        both = ~np.isnan(x) & ~np.isnan(y)
        n = int(both.sum())
        if not n:
            continue
        in_mean = n >= settings.min_shared_dialogues
        listed.append(
            RaterAgreement[stats_type](  # type: ignore[valid-type]
                raters=p.raters, n_dialogues=n, in_mean=in_mean, stats=compare(x, y, p.integer)
            )
        )
        if in_mean:
            used.append(p)
            relevant |= both
    if not listed:
        return None

    def per_pairing(rows: np.ndarray) -> list[dict[str, float]]:
        return [headline(*p.pick(rows)) for p in used]

    def mean(rows: list[np.ndarray]) -> dict[str, float]:
        values = per_pairing(np.asarray(rows))
        return {k: _mean_defined([v[k] for v in values]) for k in names}

    observed = per_pairing(r.table)
    return Agreements[stats_type](  # type: ignore[valid-type]
        n_raters=len({rater for p in used for rater in p.raters}),
        mean=_bootstrap(mean, list(r.table[relevant]), settings) if used else {},
        counted={k: sum(math.isfinite(v[k]) for v in observed) for k in names},
        comparisons=listed,
    )


def _item_agreements(
    r: _Ratings, scale: tuple[int, int], settings: Settings
) -> Callable[[list[_Pairing]], Agreements[ItemAgreement] | None]:
    def compare(x: np.ndarray, y: np.ndarray, integer: bool) -> ItemAgreement:
        return item_agreement(x, y, scale=scale, integer=integer)

    return lambda pairings: _agreements(
        r, pairings, ItemAgreement, compare, item_headline, ITEM_HEADLINE, settings
    )


def _label_agreements(
    r: _Ratings, settings: Settings
) -> Callable[[list[_Pairing]], Agreements[LabelAgreement] | None]:
    return lambda pairings: _agreements(
        r,
        pairings,
        LabelAgreement,
        lambda x, y, _: label_agreement(x, y),
        label_headline,
        LABEL_HEADLINE,
        settings,
    )


def _judge_units(r: _Ratings) -> list[Unit]:
    """(judge, expert) pairs per dialogue the judge scored, every expert of it pooled."""
    return [
        [(float(row[r.judge]), float(h)) for h in row[: len(r.raters)] if not math.isnan(h)]
        for row in r.table
        if not math.isnan(row[r.judge])
    ]


# ---------------------------------------------------------------- CTRS items, free criteria


def _item_report(r: _Ratings, item: str, scale: tuple[int, int], settings: Settings) -> ItemReport:
    experts = r.experts
    multi = (~np.isnan(experts)).sum(axis=1) >= 2

    def alpha(rows: list[np.ndarray]) -> dict[str, float]:
        return {"alpha": multi_rater_alpha(np.asarray(rows).T, "ordinal")}

    human_alpha = (
        _bootstrap(alpha, list(experts[multi]), settings)["alpha"] if multi.any() else None
    )
    agreements = _item_agreements(r, scale, settings)
    judge_vs_human = judge_vs_mean = judge_vs_experts = judge_vs_rest = None
    if r.has_judge:
        units = [u for u in _judge_units(r) if u]
        judge_integer = _is_integral([u[0][0] for u in units])
        judge_vs_human = _compare(units, scale, judge_integer, settings)
        means = [(u[0][0], float(np.mean([h for _, h in u]))) for u in units]
        judge_vs_mean = _compare(
            [[m] for m in means],
            scale,
            judge_integer and _is_integral([m for _, m in means]),
            settings,
        )
        judge_vs_experts = agreements(_judge_vs_each(r, judge_integer))
        judge_vs_rest = agreements(_vs_rest(r, judge=True))
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
        expert_pairs=agreements(_expert_pairs(r)),
        judge_vs_human=judge_vs_human,
        judge_vs_mean_human=judge_vs_mean,
        judge_vs_experts=judge_vs_experts,
        expert_vs_rest=agreements(_vs_rest(r, judge=False)),
        judge_vs_rest=judge_vs_rest,
        flag=flag,
    )


class ItemReports(NamedTuple):
    """What `item_reports` gives: CTRS items, the CTRS total, the bench's free criteria, and
    the free criteria it could not report on, with the reason."""

    items: list[ItemReport]
    total: ItemReport | None
    criteria: list[ItemReport]
    skipped: dict[str, str]


def item_reports(bench: Bench, judge: JudgeScores | None, settings: Settings) -> ItemReports:
    """One report per CTRS item the experts scored, one for the total when the experts
    scored every item (the total is only defined for complete ratings), and one per free
    criterion (`Bench.criteria()`: a source's own rubric, e.g. MindEval's c1..c6). A judge
    scores CTRS items, not a source's own criteria, so free criteria get the experts'
    agreement only; they are kept apart because they are not CTRS items and so never enter
    reward weights or recalibration."""
    dialogues = _dialogues(bench)

    def report(
        item: str,
        scale: tuple[int, int],
        value: Callable[[BenchRating], float | None],
        judge_value: Callable[[str], float | None] | None,
    ) -> ItemReport:
        return _item_report(_ratings(dialogues, value, judge_value), item, scale, settings)

    items = bench.ctrs_items()
    reports = [
        report(
            item,
            CTRS_SCALE,
            lambda r, item=item: r.ctrs.get(item),
            (lambda d, item=item: judge.ctrs.get(d, {}).get(item)) if judge else None,
        )
        for item in items
    ]
    total = None
    if items:

        def human_total(r: BenchRating) -> float | None:
            values = [r.ctrs.get(i) for i in items]
            return None if any(v is None for v in values) else float(sum(values))  # type: ignore[arg-type]

        total = report(
            TOTAL,
            (CTRS_SCALE[0] * len(items), CTRS_SCALE[1] * len(items)),
            human_total,
            (lambda d: judge.ctrs_total(d, items)) if judge else None,
        )
    criteria, skipped = [], {}
    for name in bench.criteria():
        scale = bench.scale(name)
        if scale is None:
            skipped[name] = "no rater scored it"
        elif scale[0] == scale[1]:
            skipped[name] = (
                f"every score is {scale[0]} and the bench declares no scale for it "
                "(give one under `scales`), so agreement on it is undefined"
            )
        else:
            criteria.append(report(name, scale, lambda r, name=name: r.criteria.get(name), None))
    return ItemReports(reports, total, criteria, skipped)


# ---------------------------------------------------------------- safety labels


def label_reports(bench: Bench, judge: JudgeScores | None, settings: Settings) -> list[LabelReport]:
    """Per safety label: every pair of experts, the judge against each expert and against
    every expert pooled; a label that is not applicable (null) on either side drops out of
    that pair. The flag reads the mean over expert pairs of Cohen's kappa."""
    dialogues = _dialogues(bench)
    out = []
    for label in bench.safety_labels():
        r = _ratings(
            dialogues,
            lambda x, label=label: x.safety.get(label),
            (lambda d, label=label: judge.safety.get(d, {}).get(label)) if judge else None,
        )
        agreements = _label_agreements(r, settings)
        expert_pairs = agreements(_expert_pairs(r))
        judge_vs_human = judge_vs_experts = None
        if judge is not None:
            judge_vs_human = _compare_labels(_judge_units(r), settings)
            judge_vs_experts = agreements(_judge_vs_each(r, True))
        flag = None
        kappa = expert_pairs.mean.get("cohen_kappa") if expert_pairs else None
        if kappa is not None and kappa.mean is not None and kappa.mean < settings.min_human_alpha:
            flag = (
                f"expert-expert kappa {kappa.mean:.2f} (mean over "
                f"{expert_pairs.counted['cohen_kappa']} pairs) is below "  # type: ignore[union-attr]
                f"{settings.min_human_alpha:.2f}"
            )
        out.append(
            LabelReport(
                label=label,
                expert_pairs=expert_pairs,
                judge_vs_human=judge_vs_human,
                judge_vs_experts=judge_vs_experts,
                flag=flag,
            )
        )
    return out


# ---------------------------------------------------------------- check questions


JUDGE = "judge"


def check_report(bench: Bench, judge: JudgeScores | None, settings: Settings) -> CheckReport | None:
    """Check-question answers, when the bench has them (e.g. the Moore et al. import); the
    judge's appropriate-answer rate is listed under "judge"."""
    dialogues = [d for d in _dialogues(bench) if d.check is not None]
    if not dialogues:
        return None
    humans = _ratings(
        dialogues,
        lambda x: x.check_answer,
        (lambda d: judge.check.get(d)) if judge is not None else None,
    )
    raters_vs_human = {}
    for rater in bench.raters("model"):
        answers = {
            d.id: r.check_answer
            for d in dialogues
            for r in d.ratings
            if r.rater == rater and r.rater_kind == "model" and r.check_answer is not None
        }
        units = [
            [(float(answers[d.id]), float(h)) for h in row if not math.isnan(h)]
            for d, row in zip(dialogues, humans.experts, strict=True)
            if d.id in answers
        ]
        if comparison := _compare_labels(units, settings):
            raters_vs_human[rater] = comparison
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
        expert_pairs=_label_agreements(humans, settings)(_expert_pairs(humans)),
        judge_vs_human=_compare_labels(_judge_units(humans), settings) if judge else None,
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
    labelled = [(d.id, d.quality()) for d in _dialogues(bench)]
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
