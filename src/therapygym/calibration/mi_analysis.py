"""MI behaviour coding against the experts: per code, for all codes at once, the summary
indices, the global ratings, and how well the global ratings separate expert-labelled
high- from low-quality sessions.

Experts may code a turn more coarsely than the rubric does (AnnoMI's simple file says
"question", not whether it was open or closed): a label is then the group of codes it
stands for (`MIRubric.groups`). For each code and each group C, a turn is *decided* by an
expert's label L when L's codes all lie in C (a positive) or none does (a negative); a
label that straddles C (a "question" for `open_question`) decides nothing and the turn is
left out of C's comparison, as is a turn whose label has no counterpart in the rubric. The
experts' reference is the majority of the experts who decided the turn (a tie decides
nothing). The judge, which always gives a code, is positive when its code lies in C. So a
code the experts' labels never single out (AnnoMI has no affirmation label) is reported as
not assessable rather than as a judge that is always wrong.

All codes at once are compared at the level of `behaviour_classes`, groups that put every
code in one class (question, reflection, therapist input, affirmation or other: AnnoMI's
four main behaviours): Cohen's kappa, accuracy, per-class precision, recall and F1 and the
confusion matrix (scikit-learn).

Where several experts coded the same turns (AnnoMI's seven transcripts with ten
annotators, imported with `annotators=True`), the ceiling is Krippendorff's alpha (nominal)
over all of them and the mean over expert pairs of Cohen's kappa; the judge's kappa
against each of those experts, on the same turns, is the number to read against it.

Intervals are percentile bootstraps that resample dialogues (a dialogue's turns are not
independent), as everywhere in the calibration.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel
from scipy.stats import spearmanr
from sklearn.metrics import (
    accuracy_score,
    cohen_kappa_score,
    confusion_matrix,
    precision_recall_fscore_support,
)

from therapygym.calibration.analysis import (
    ItemReport,
    JudgeScores,
    LabelComparison,
    ReportCI,
    Settings,
    _bootstrap,
    _dialogues,
    _item_report,
    _ratings,
)
from therapygym.calibration.bench import Bench, Dialogue
from therapygym.calibration.stats import (
    _quiet,
    label_agreement,
    label_headline,
    multi_rater_alpha,
    separation_auc,
)
from therapygym.judges.mi import MIIndices, summary_indices
from therapygym.judges.rubric import MIRubric, builtin_rubric

MI_SCALE = (1, 5)
INDICES = ("reflection_to_question", "percent_complex_reflections")
NAN = float("nan")


def _num(value: float | None) -> float | None:
    """A statistic for the JSON: None where undefined (nan)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


class CodeReport(BaseModel):
    """One code (or group of codes): the judge against the experts' reference on the turns
    the experts' labels decide, and the experts' own agreement where several coded a turn."""

    code: str
    level: Literal["code", "group"]
    codes: list[str]
    decided: int  # turns the experts' labels decide for this code
    expert_positives: int
    judge_positives: int | None  # among the decided turns the judge coded
    judge_vs_experts: LabelComparison | None
    experts_alpha: ReportCI | None  # Krippendorff's alpha (nominal) over every expert
    expert_pairs_kappa: float | None  # the mean over expert pairs of Cohen's kappa
    expert_pairs: int  # pairs in that mean
    judge_vs_each_expert_kappa: float | None  # on the turns several experts coded
    note: str | None = None


class ClassStats(BaseModel):
    precision: float | None
    recall: float | None
    f1: float | None
    expert_support: int
    judge_support: int


class BehaviourReport(BaseModel):
    """All codes at once, at the level of the rubric's behaviour classes."""

    classes: list[str]
    n_turns: int
    n_dialogues: int
    kappa: ReportCI
    accuracy: ReportCI
    per_class: dict[str, ClassStats]
    confusion: list[list[int]]  # rows: the experts' class, columns: the judge's
    experts_alpha: ReportCI | None
    expert_pairs_kappa: float | None
    expert_pairs: int
    judge_vs_each_expert_kappa: float | None


class IndexReport(BaseModel):
    """A summary index per dialogue from the judge's codes and from the experts' (the mean
    over experts), on the turns the judge coded; its AUC for expert quality labels."""

    index: str
    n_dialogues: int
    judge_mean: float | None
    expert_mean: float | None
    spearman_rho: float | None
    judge_auc: float | None
    expert_auc: float | None


class MISeparation(BaseModel):
    """Whether the judge's MI global ratings rank high-quality sessions above low."""

    score: str
    n_high: int
    n_low: int
    auc: ReportCI
    global_auc: dict[str, float | None]
    technical_auc: float | None
    relational_auc: float | None


class MIReport(BaseModel):
    """Everything the calibration measured about MI coding (`mi` in calibration.json)."""

    rubric: str
    coverage: dict[str, int]
    codes: list[CodeReport]
    behaviour: BehaviourReport | None
    indices: list[IndexReport]
    separation: MISeparation | None
    global_ratings: list[ItemReport]
    notes: list[str]


# ---------------------------------------------------------------- the coded turns


@dataclass(frozen=True)
class _Table:
    """Every expert-coded turn of the bench, one row each, dialogues in id order: the
    experts' labels as indices into `vocabulary` (-1: not coded, or no counterpart), the
    judge's code likewise (-1: not judged), and the row's dialogue."""

    vocabulary: list[str]
    raters: list[str]
    labels: np.ndarray  # rows x raters, int
    judge: np.ndarray  # rows, int
    dialogue: np.ndarray  # rows, the dialogue's position
    dialogues: list[Dialogue]
    has_judge: bool
    unmapped: int  # coded turns whose every label has no counterpart

    def lookup(self, values: Sequence[float]) -> Callable[[np.ndarray], np.ndarray]:
        """Map label indices to `values` (per vocabulary entry), -1 to nan."""
        table = np.array([*values, NAN], dtype=float)
        return lambda idx: table[idx]

    def units(self, judge: np.ndarray, reference: np.ndarray) -> list[list[tuple[float, float]]]:
        """Per dialogue, the (judge, reference) pairs where both are given."""
        keep = ~np.isnan(judge) & ~np.isnan(reference)
        out: list[list[tuple[float, float]]] = [[] for _ in self.dialogues]
        for row in np.flatnonzero(keep):
            out[self.dialogue[row]].append((float(judge[row]), float(reference[row])))
        return [u for u in out if u]


def _table(bench: Bench, judge: JudgeScores | None, rubric: MIRubric) -> _Table:
    vocabulary = [c.id for c in rubric.codes] + list(rubric.groups)
    index = {label: i for i, label in enumerate(vocabulary)}
    dialogues = _dialogues(bench)
    raters = sorted(
        {r.rater for d in dialogues for r in d.human_ratings() if r.mi is not None and r.mi.codes}
    )
    labels, judged, where = [], [], []
    unmapped = 0
    for position, d in enumerate(dialogues):
        coded = {
            r.rater: r.mi.codes
            for r in d.human_ratings()
            if r.mi is not None and r.mi.codes  # type: ignore[union-attr]
        }
        mine = judge.mi[d.id].codes if judge is not None and d.id in judge.mi else {}
        for turn in sorted({t for codes in coded.values() for t in codes}):
            given = [coded.get(rater, {}).get(turn) for rater in raters]
            if all(label is None for label in given):
                unmapped += 1
            labels.append([index.get(label, -1) if label else -1 for label in given])
            judged.append(index.get(mine.get(turn, ""), -1))
            where.append(position)
    return _Table(
        vocabulary=vocabulary,
        raters=raters,
        labels=np.array(labels, dtype=int).reshape(len(labels), len(raters)),
        judge=np.array(judged, dtype=int),
        dialogue=np.array(where, dtype=int),
        dialogues=dialogues,
        has_judge=judge is not None,
        unmapped=unmapped,
    )


def _majority(rows: np.ndarray) -> np.ndarray:
    """Per row of 0/1/nan: 1 or 0 when most of the given values say so, nan on a tie."""
    given = (~np.isnan(rows)).sum(axis=1)
    yes = np.nansum(rows, axis=1)
    return np.where(2 * yes > given, 1.0, np.where((2 * yes < given) & (given > 0), 0.0, NAN))


def _plurality(rows: np.ndarray) -> np.ndarray:
    """Per row of class indices (nan: none), the most frequent class; nan on a tie."""
    out = np.full(len(rows), NAN)
    for i, row in enumerate(rows):
        counts = Counter(int(v) for v in row if not math.isnan(v)).most_common(2)
        if counts and (len(counts) == 1 or counts[0][1] > counts[1][1]):
            out[i] = counts[0][0]
    return out


@dataclass(frozen=True)
class _Ceiling:
    alpha: ReportCI | None
    pairs_kappa: float | None
    pairs: int
    judge_each_kappa: float | None


def _mean(values: list[float]) -> float | None:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else None


def _ceiling(
    t: _Table,
    experts: np.ndarray,
    judge: np.ndarray,
    kappa: Callable[[np.ndarray, np.ndarray], float],
    settings: Settings,
) -> _Ceiling:
    """The experts' agreement on the turns two or more of them decided (values: 0/1 or a
    class index, nan where not decided), and the judge against each of them there."""
    multi = (~np.isnan(experts)).sum(axis=1) >= 2
    if not multi.any():
        return _Ceiling(None, None, 0, None)
    blocks = [experts[multi & (t.dialogue == d)].T for d in np.unique(t.dialogue[multi])]
    alpha = _bootstrap(
        lambda rs: {"alpha": multi_rater_alpha(np.hstack(rs), "nominal")}, blocks, settings
    )["alpha"]
    pairs = []
    for i, j in itertools.combinations(range(len(t.raters)), 2):
        both = multi & ~np.isnan(experts[:, i]) & ~np.isnan(experts[:, j])
        if len(np.unique(t.dialogue[both])) >= settings.min_shared_dialogues:
            pairs.append(kappa(experts[both, i], experts[both, j]))
    each = []
    if t.has_judge:
        for i in range(len(t.raters)):
            both = multi & ~np.isnan(experts[:, i]) & ~np.isnan(judge)
            if both.any():
                each.append(kappa(judge[both], experts[both, i]))
    return _Ceiling(
        alpha=alpha,
        pairs_kappa=_mean(pairs),
        pairs=sum(math.isfinite(p) for p in pairs),
        judge_each_kappa=_mean(each),
    )


def _binary_kappa(x: np.ndarray, y: np.ndarray) -> float:
    return label_headline(x, y)["cohen_kappa"]


def _compare_codes(units: list[list[tuple[float, float]]], settings: Settings) -> LabelComparison:
    """The judge (first) against the reference (second) on every pair of every dialogue:
    accuracy, precision, recall, F1 and Cohen's kappa, with intervals for kappa and accuracy
    resampling dialogues. (The safety labels' comparison also resamples precision, recall
    and F1; at one scikit-learn call per statistic, per code and per resample, that tripled
    the cost of an AnnoMI calibration for numbers read beside the kappa.)"""

    def pooled(rs: list[list[tuple[float, float]]]) -> tuple[list[float], list[float]]:
        return [p[0] for u in rs for p in u], [p[1] for u in rs for p in u]

    return LabelComparison(
        n_dialogues=len(units),
        stats=label_agreement(*pooled(units)),
        ci=_bootstrap(lambda rs: label_headline(*pooled(rs)), units, settings),
    )


# ---------------------------------------------------------------- per code


def _code_report(label: str, t: _Table, rubric: MIRubric, settings: Settings) -> CodeReport:
    members = rubric.members(label)

    def decides(entry: str) -> float:
        codes = rubric.members(entry)
        return 1.0 if codes <= members else 0.0 if not codes & members else NAN

    values = [decides(entry) for entry in t.vocabulary]
    experts = t.lookup(values)(t.labels)
    judge = t.lookup(values)(t.judge)
    reference = _majority(experts)
    decided = int((~np.isnan(reference)).sum())
    positives = int(np.nansum(reference))
    shown = ~np.isnan(reference) & ~np.isnan(judge)
    note = comparison = None
    if not decided:
        note = "no expert label decides it"
    elif not positives:
        straddling = int(np.isnan(reference).sum()) - t.unmapped
        note = (
            "the experts' labels never single it out (their coarser labels leave it "
            f"undecided on {straddling} turns)"
            if straddling > 0
            else "the experts never coded it"
        )
    elif t.has_judge:
        comparison = _compare_codes(t.units(judge, reference), settings)
    ceiling = (
        _ceiling(t, experts, judge, _binary_kappa, settings)
        if positives
        else _Ceiling(None, None, 0, None)
    )
    return CodeReport(
        code=label,
        level="group" if label in rubric.groups else "code",
        codes=[c.id for c in rubric.codes if c.id in members],
        decided=decided,
        expert_positives=positives,
        judge_positives=int(judge[shown].sum()) if t.has_judge else None,
        judge_vs_experts=comparison,
        experts_alpha=ceiling.alpha,
        expert_pairs_kappa=_num(ceiling.pairs_kappa),
        expert_pairs=ceiling.pairs,
        judge_vs_each_expert_kappa=_num(ceiling.judge_each_kappa),
        note=note,
    )


# ---------------------------------------------------------------- all codes at once


def _class_kappa(k: int) -> Callable[[np.ndarray, np.ndarray], float]:
    def kappa(x: np.ndarray, y: np.ndarray) -> float:
        keep = ~np.isnan(x) & ~np.isnan(y)
        if not keep.any():
            return NAN
        with _quiet():
            value = cohen_kappa_score(y[keep].astype(int), x[keep].astype(int), labels=range(k))
        return float(value)

    return kappa


def _behaviour_report(t: _Table, rubric: MIRubric, settings: Settings) -> BehaviourReport | None:
    classes = rubric.behaviour_classes
    if not classes or not t.has_judge:
        return None
    k = len(classes)

    def class_of(entry: str) -> float:
        codes = rubric.members(entry)
        for i, name in enumerate(classes):
            if codes <= rubric.members(name):
                return float(i)
        return NAN

    values = [class_of(entry) for entry in t.vocabulary]
    experts = t.lookup(values)(t.labels)
    judge = t.lookup(values)(t.judge)
    reference = _plurality(experts)
    units = t.units(judge, reference)
    if not units:
        return None
    pairs = [p for u in units for p in u]
    mine = np.array([p[0] for p in pairs], dtype=int)
    theirs = np.array([p[1] for p in pairs], dtype=int)
    labels = list(range(k))

    def headline(rs: list[list[tuple[float, float]]]) -> dict[str, float]:
        x = np.array([p[0] for u in rs for p in u], dtype=int)
        y = np.array([p[1] for u in rs for p in u], dtype=int)
        with _quiet():
            kappa = cohen_kappa_score(y, x, labels=labels)
        return {"kappa": float(kappa), "accuracy": float(accuracy_score(y, x))}

    cis = _bootstrap(headline, units, settings)
    with _quiet():
        precision, recall, f1, _ = precision_recall_fscore_support(
            theirs, mine, labels=labels, average=None, zero_division=np.nan
        )
    ceiling = _ceiling(t, experts, judge, _class_kappa(k), settings)
    return BehaviourReport(
        classes=list(classes),
        n_turns=len(pairs),
        n_dialogues=len(units),
        kappa=cis["kappa"],
        accuracy=cis["accuracy"],
        per_class={
            name: ClassStats(
                precision=_num(precision[i]),
                recall=_num(recall[i]),
                f1=_num(f1[i]),
                expert_support=int((theirs == i).sum()),
                judge_support=int((mine == i).sum()),
            )
            for i, name in enumerate(classes)
        },
        confusion=confusion_matrix(theirs, mine, labels=labels).tolist(),
        experts_alpha=ceiling.alpha,
        expert_pairs_kappa=_num(ceiling.pairs_kappa),
        expert_pairs=ceiling.pairs,
        judge_vs_each_expert_kappa=_num(ceiling.judge_each_kappa),
    )


# ---------------------------------------------------------------- indices, separation


def _expert_indices(d: Dialogue, rubric: MIRubric, turns: set[int] | None) -> list[MIIndices]:
    """Each expert's indices of a dialogue, on `turns` only when given (those the judge
    coded, so both sides count the same turns)."""
    out = []
    for r in d.human_ratings():
        if r.mi is None or not r.mi.codes:
            continue
        labels = [
            label
            for turn, label in r.mi.codes.items()
            if label is not None and (turns is None or turn in turns)
        ]
        out.append(summary_indices(labels, rubric))
    return out


def _spearman(x: list[float], y: list[float]) -> float | None:
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    return _num(spearmanr(x, y).statistic)


def _index_reports(bench: Bench, judge: JudgeScores | None, rubric: MIRubric) -> list[IndexReport]:
    rows: dict[str, list[tuple[float | None, float | None, str | None]]] = {i: [] for i in INDICES}
    for d in _dialogues(bench):
        mine = judge.mi.get(d.id) if judge is not None else None
        if judge is not None and mine is None:
            continue
        theirs = _expert_indices(d, rubric, set(mine.codes) if mine else None)
        if not theirs:
            continue
        judged = summary_indices(mine.codes.values(), rubric) if mine else None
        for name in INDICES:
            given = [v for v in (getattr(i, name) for i in theirs) if v is not None]
            expert = float(np.mean(given)) if given else None
            rows[name].append((getattr(judged, name) if judged else None, expert, d.quality()))
    out = []
    for name in INDICES:
        both = [(j, e, q) for j, e, q in rows[name] if j is not None and e is not None]
        experts = both if judge is not None else [r for r in rows[name] if r[1] is not None]

        def auc(values: list[tuple[float | None, str | None]]) -> float | None:
            labelled = [(v, q == "high") for v, q in values if q is not None]
            if not labelled:
                return None
            return _num(separation_auc([v for v, _ in labelled], [h for _, h in labelled]))

        out.append(
            IndexReport(
                index=name,
                n_dialogues=len(both) if judge is not None else len(experts),
                judge_mean=_num(np.mean([j for j, _, _ in both])) if both else None,
                expert_mean=_num(np.mean([e for _, e, _ in experts])) if experts else None,
                spearman_rho=_spearman([j for j, _, _ in both], [e for _, e, _ in both]),  # type: ignore[misc]
                judge_auc=auc([(j, q) for j, _, q in both]) if judge is not None else None,
                expert_auc=auc([(e, q) for _, e, q in experts]),
            )
        )
    return out


def _separation(bench: Bench, judge: JudgeScores | None, settings: Settings) -> MISeparation | None:
    if judge is None:
        return None
    labelled = [
        (d.id, d.quality() == "high")
        for d in _dialogues(bench)
        if d.quality() is not None and d.id in judge.mi and judge.mi[d.id].global_ratings
    ]
    if not labelled:
        return None
    ratings = {i: judge.mi[i].global_ratings for i, _ in labelled}
    mean = {i: float(np.mean(list(g.values()))) for i, g in ratings.items()}
    high = [h for _, h in labelled]
    auc = _bootstrap(
        lambda rs: {"auc": separation_auc([mean[i] for i, _ in rs], [h for _, h in rs])},
        labelled,
        settings,
    )["auc"]
    rubric = builtin_rubric("mi")
    assert isinstance(rubric, MIRubric)

    def of(values: list[float | None]) -> float | None:
        return _num(separation_auc(values, high))

    indices = {i: summary_indices([], rubric, g) for i, g in ratings.items()}
    return MISeparation(
        score="mean of the judge's MI global ratings (1-5)",
        n_high=sum(high),
        n_low=len(high) - sum(high),
        auc=auc,
        global_auc={
            g.id: of([ratings[i].get(g.id) for i, _ in labelled]) for g in rubric.global_ratings
        },
        technical_auc=of([indices[i].technical for i, _ in labelled]),
        relational_auc=of([indices[i].relational for i, _ in labelled]),
    )


def _global_reports(
    bench: Bench, judge: JudgeScores | None, settings: Settings
) -> list[ItemReport]:
    """The experts' MI global ratings, when a bench has them: the same agreement tables as
    a CTRS item (scale 1-5)."""
    dialogues = _dialogues(bench)
    out = []
    for g in bench.mi_globals():
        r = _ratings(
            dialogues,
            lambda x, g=g: x.mi.global_ratings.get(g) if x.mi is not None else None,
            (lambda d, g=g: judge.mi[d].global_ratings.get(g) if d in judge.mi else None)
            if judge is not None
            else None,
        )
        out.append(_item_report(r, g, MI_SCALE, settings))
    return out


def mi_report(bench: Bench, judge: JudgeScores | None, settings: Settings) -> MIReport | None:
    """The MI section of a calibration: None when neither the experts nor the judge coded
    MI on this bench."""
    if not bench.mi_coded() and not (judge is not None and judge.mi):
        return None
    rubric = builtin_rubric("mi")
    assert isinstance(rubric, MIRubric)
    t = _table(bench, judge, rubric)
    codes = (
        [_code_report(label, t, rubric, settings) for label in t.vocabulary] if len(t.judge) else []
    )
    notes = []
    if t.unmapped:
        notes.append(
            f"{t.unmapped} expert-coded turns carry a label with no counterpart among the MI "
            "codes and are not compared"
        )
    if skipped := [c.code for c in codes if c.note]:
        notes.append("not assessable on this bench: " + ", ".join(skipped))
    if t.has_judge:
        unjudged = int((t.judge < 0).sum())
        if unjudged:
            notes.append(
                f"{unjudged} expert-coded turns have no judge code (a failed unit, or turns "
                "past --max-turns) and are left out of the judge comparisons"
            )
    return MIReport(
        rubric=rubric.ref,
        coverage={
            "dialogues_coded": len({int(d) for d in t.dialogue}),
            "dialogues_judged": len(judge.mi) if judge is not None else 0,
            "expert_coded_turns": len(t.judge),
            "unmapped_turns": t.unmapped,
            "judged_turns": int((t.judge >= 0).sum()),
            "experts": len(t.raters),
        },
        codes=codes,
        behaviour=_behaviour_report(t, rubric, settings),
        indices=_index_reports(bench, judge, rubric) if bench.mi_coded() else [],
        separation=_separation(bench, judge, settings),
        global_ratings=_global_reports(bench, judge, settings),
        notes=notes,
    )
