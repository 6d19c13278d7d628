"""The human-human ceiling of a study as it accrues, and how far each rater sits from the
others.

The ceiling is `calibrate --humans-only` itself: the study's submitted ratings become a
bench (export.py, the same lines `studio export` writes, without the consensus) and
`calibration.calibrate.build_report` computes every statistic on it with no judge, so the
admin page and a later `calibrate --bench exported.jsonl --humans-only` give the same
figures for the same settings.

Per rater, on the sessions they share with another rater: for each CTRS item the mean
absolute difference between their score and each other rater's (points on 0-6), and
their bias (their score minus the others' mean); for each safety label how often their
verdict differs from another's (not applicable leaves a label out). One value per session
(averaged over the other raters of it), so the interval (`stats.mean_ci`, a bootstrap
over sessions) resamples sessions, which are what is independent.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

from pydantic import BaseModel

from therapygym.calibration.analysis import Settings
from therapygym.calibration.bench import build_bench
from therapygym.calibration.calibrate import build_report
from therapygym.calibration.report import CalibrationReport
from therapygym.stats import Estimate, mean_ci
from therapygym.studio.export import bench_ratings
from therapygym.studio.stored import CTRS_PREFIX, StoredRating


class RaterDistance(BaseModel):
    """How far one rater sits from the others. `ctrs_abs` and `ctrs_bias` average, per
    session, over the CTRS items scored by this rater and another; `items` gives each
    CTRS item's mean absolute difference and each safety label's disagreement rate."""

    rater: str
    n_sessions: int
    ctrs_abs: Estimate
    ctrs_bias: Estimate
    items: dict[str, Estimate]


class AgreementView(BaseModel):
    """The admin page's figures: the humans-only calibration report (None before any
    submitted rating), the raters' distances, and how much has been rated."""

    report: CalibrationReport | None
    raters: list[RaterDistance]
    sessions_rated: int
    double_rated: int
    notes: list[str]


def rater_distances(
    rows: Sequence[StoredRating], items: Sequence[str], settings: Settings
) -> list[RaterDistance]:
    """Each rater's distance from the others (see the module docstring), raters in name
    order, items in `items` order; a rater who shares nothing with anyone is listed with
    empty estimates."""
    values: dict[tuple[str, str], dict[str, int]] = {}
    for r in rows:
        if r.value is not None:
            values.setdefault((r.session_id, r.item), {})[r.rater] = r.value
    out = []
    for rater in sorted({r.rater for r in rows}):
        per_item: dict[str, list[float]] = {}
        per_session: dict[str, list[tuple[float, float]]] = {}
        shared: set[str] = set()
        for (session_id, item), given in values.items():
            others = [v for who, v in given.items() if who != rater]
            if rater not in given or not others:
                continue
            mine = given[rater]
            shared.add(session_id)
            if item.startswith(CTRS_PREFIX):
                distance = statistics.fmean(abs(mine - o) for o in others)
                bias = mine - statistics.fmean(others)
                per_session.setdefault(session_id, []).append((distance, bias))
            else:
                distance = statistics.fmean(float(mine != o) for o in others)
            per_item.setdefault(item, []).append(distance)

        def ci(xs: list[float]) -> Estimate:
            return mean_ci(xs, seed=settings.seed, level=settings.level)

        out.append(
            RaterDistance(
                rater=rater,
                n_sessions=len(shared),
                ctrs_abs=ci([statistics.fmean(d for d, _ in v) for v in per_session.values()]),
                ctrs_bias=ci([statistics.fmean(b for _, b in v) for v in per_session.values()]),
                items={item: ci(per_item[item]) for item in items if item in per_item},
            )
        )
    return out


def study_agreement(
    study_id: str, rows: Sequence[StoredRating], items: Sequence[str], settings: Settings
) -> AgreementView:
    """The ceiling and the distances on `rows`: the study's submitted ratings, consensus
    excluded. `items` are the study's item keys, in rubric order."""
    ratings = bench_ratings(study_id, rows)
    report = None
    if ratings:
        report = build_report(build_bench(f"study {study_id}", ratings), None, settings)
    raters_of: dict[str, set[str]] = {}
    for r in rows:
        if r.scored:
            raters_of.setdefault(r.session_id, set()).add(r.rater)
    notes = ["no submitted ratings yet"] if report is None else list(report.notes)
    return AgreementView(
        report=report,
        raters=rater_distances(rows, items, settings),
        sessions_rated=len(raters_of),
        double_rated=sum(len(v) >= 2 for v in raters_of.values()),
        notes=notes,
    )
