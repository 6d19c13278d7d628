"""A calibration report for people: rich tables for the terminal, an HTML section for the
report. Numbers only; every statistic is computed in `analysis` and stored in the JSON."""

from __future__ import annotations

import math
from functools import partial

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from therapygym.calibration.analysis import Comparison, ItemReport
from therapygym.calibration.report import CalibrationReport
from therapygym.stats import format_ci
from therapygym.templates import html_env

_ci = partial(format_ci, fmt="{:.2f}")  # every CI of the calibration tables: two decimals


def fmt(value: float | None, spec: str = ".2f") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return format(value, spec)


def _stat(c: Comparison | None, name: str, spec: str = ".2f", with_ci: bool = True) -> str:
    if c is None:
        return "—"
    if with_ci and name in c.ci:
        return format_ci(c.ci[name], f"{{:{spec}}}")
    return fmt(getattr(c.stats, name), spec)


def _items_table(report: CalibrationReport) -> Table:
    level = round(float(report.settings["level"]) * 100)  # type: ignore[arg-type]
    table = Table(title=f"CTRS items: judge vs experts ({level}% CIs, dialogues resampled)")
    columns = (
        "item", "n", "α ord", "ICC(2,1)", "ICC(3,1)", "ρ", "κw", "exact", "±1", "bias",
        "vs mean ICC(2,1)", "experts α", "expert pair ICC(2,1)", "flag",
    )  # fmt: skip
    for col in columns:
        table.add_column(col, justify="left" if col in ("item", "flag") else "right")
    rows: list[ItemReport] = [*report.items, *([report.total] if report.total else [])]
    for r in rows:
        j = r.judge_vs_human
        table.add_row(
            r.item,
            str(j.stats.n if j else 0),
            _stat(j, "krippendorff_alpha_ordinal"),
            _stat(j, "icc2_1"),
            _stat(j, "icc3_1", with_ci=False),
            _stat(j, "spearman_rho", with_ci=False),
            _stat(j, "weighted_kappa", with_ci=False),
            _stat(j, "exact", ".0%", with_ci=False),
            _stat(j, "within_1", ".0%", with_ci=False),
            _stat(j, "mean_bias", "+.2f", with_ci=False),
            _stat(r.judge_vs_mean_human, "icc2_1"),
            _ci(r.human_alpha_ordinal),
            _stat(r.human_human, "icc2_1"),
            Text("unreliable" if r.flag else "", style="yellow"),
        )
    return table


def _labels_table(report: CalibrationReport) -> Table:
    table = Table(title="Safety labels: judge vs experts")
    for col in ("label", "n", "positives", "accuracy", "precision", "recall", "F1", "κ",
                "expert pair κ", "flag"):  # fmt: skip
        table.add_column(col, justify="left" if col in ("label", "flag") else "right")
    for r in report.labels:
        j = r.judge_vs_human
        table.add_row(
            r.label,
            str(j.stats.n if j else 0),
            str(j.stats.n_positive if j else "—"),
            _ci(j.ci.get("accuracy")) if j else "—",
            fmt(j.stats.precision) if j else "—",
            fmt(j.stats.recall) if j else "—",
            fmt(j.stats.f1) if j else "—",
            _ci(j.ci.get("cohen_kappa")) if j else "—",
            _ci(r.human_human.ci.get("cohen_kappa")) if r.human_human else "—",
            Text("unreliable" if r.flag else "", style="yellow"),
        )
    return table


def _checks_table(report: CalibrationReport) -> Table:
    checks = report.checks
    assert checks is not None
    table = Table(title="Check questions: raters vs experts")
    for col in ("rater", "n", "agreement", "κ", "appropriate answers"):
        table.add_column(col, justify="left" if col == "rater" else "right")
    if checks.human_human:
        hh = checks.human_human
        table.add_row(
            "expert vs expert",
            str(hh.stats.n),
            _ci(hh.ci.get("accuracy")),
            _ci(hh.ci.get("cohen_kappa")),
            "",
        )
    if checks.judge_vs_human:
        jh = checks.judge_vs_human
        table.add_row(
            "judge",
            str(jh.stats.n),
            _ci(jh.ci.get("accuracy")),
            _ci(jh.ci.get("cohen_kappa")),
            fmt(checks.appropriate_rate.get("judge"), ".0%"),
        )
    for rater, c in checks.raters_vs_human.items():
        table.add_row(
            rater,
            str(c.stats.n),
            _ci(c.ci.get("accuracy")),
            _ci(c.ci.get("cohen_kappa")),
            fmt(checks.appropriate_rate.get(rater), ".0%"),
        )
    return table


def terminal_view(report: CalibrationReport) -> RenderableType:
    """Everything the command prints after judging, in reading order."""
    parts: list[RenderableType] = []
    b = report.bench
    experts = f"{b['human_raters']} expert" + ("s" if b["human_raters"] != 1 else "")
    parts.append(
        Text(
            f"bench {b['name']} ({b['digest']}): {b['dialogues']} dialogues, {b['ratings']} "
            f"ratings by {experts}, {b['multiply_rated_dialogues']} rated by two or more"
        )
    )
    if report.items:
        parts.append(_items_table(report))
    if report.labels:
        parts.append(_labels_table(report))
    if report.checks:
        parts.append(_checks_table(report))
    if s := report.separation:
        parts.append(
            Text(
                f"quality separation ({s.n_high} high, {s.n_low} low): AUC "
                f"{_ci(s.auc)} of {s.score}"
            )
        )
    if report.recalibration and report.recalibration.items:
        rc = report.recalibration
        table = Table(
            title=f"Recalibration ({rc.method}), held-out dialogues: judge vs experts' mean"
        )
        for col in ("item", "fit/test", "ICC(2,1) before", "after", "|diff| before", "after",
                    "bias before", "after"):  # fmt: skip
            table.add_column(col, justify="left" if col == "item" else "right")
        for m in rc.items:
            b0, b1 = m.held_out_before, m.held_out_after
            table.add_row(
                m.item, f"{m.n_fit}/{m.n_test}", fmt(b0.icc2_1), fmt(b1.icc2_1),
                fmt(b0.mean_abs_diff), fmt(b1.mean_abs_diff),
                fmt(b0.mean_bias, "+.2f"), fmt(b1.mean_bias, "+.2f"),
            )  # fmt: skip
        parts.append(table)
    dropped = report.weights.dropped
    if dropped:
        parts.append(Text("reward weights: 0 for " + ", ".join(dropped), style="yellow"))
    for note in report.notes:
        parts.append(Text(f"note: {note}", style="yellow"))
    return Group(*parts)


def html_section(report: CalibrationReport) -> str:
    """The calibration section of the HTML report: a fragment, every value escaped."""
    template = html_env().get_template(
        "therapygym.calibration:templates/calibration_section.html.j2"
    )
    return template.render(r=report, fmt=fmt, fmt_ci=_ci)
