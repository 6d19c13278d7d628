"""A calibration report for people: rich tables for the terminal, an HTML section for the
report. Numbers only; every statistic is computed in `analysis` and stored in the JSON."""

from __future__ import annotations

import math
from functools import partial

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from therapygym.calibration.analysis import Agreements, Comparison, ItemReport, RaterAgreement
from therapygym.calibration.mi_analysis import CodeReport, MIReport
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


def mean_ci(a: Agreements | None, name: str) -> str:  # type: ignore[type-arg]
    """A mean over raters (or pairs) with its CI, "—" where there is none."""
    return _ci(a.mean.get(name)) if a is not None else "—"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def ceiling_line(r: ItemReport) -> str:
    """The ceiling of one item in words, then how the judge compares with it, e.g.
    "ceiling: mean pairwise Spearman 0.41 [0.30, 0.52] over 6 pairs (4 raters); ..."."""
    pairs = r.expert_pairs
    rho = pairs.mean.get("spearman_rho") if pairs else None
    if pairs is None or rho is None or rho.mean is None:
        parts = ["ceiling: no two experts share enough dialogues for a pairwise Spearman"]
    else:
        parts = [
            f"ceiling: mean pairwise Spearman {_ci(rho)} over "
            f"{_plural(pairs.counted['spearman_rho'], 'pair')} "
            f"({_plural(pairs.n_raters, 'rater')})"
        ]
    if r.human_alpha_ordinal is not None:
        parts.append(f"Krippendorff's alpha over all raters {_ci(r.human_alpha_ordinal)}")
    if (j := r.judge_vs_experts) and j.mean:
        parts.append(
            f"judge vs each expert: mean Spearman {mean_ci(j, 'spearman_rho')} over "
            f"{_plural(j.counted['spearman_rho'], 'expert')}"
        )
    if (e := r.expert_vs_rest) and e.mean:
        loo = "leave one out, vs the mean of the other experts: experts "
        loo += mean_ci(e, "spearman_rho")
        if r.judge_vs_rest and r.judge_vs_rest.mean:
            loo += f", judge {mean_ci(r.judge_vs_rest, 'spearman_rho')}"
        parts.append(loo)
    return "; ".join(parts)


def _has_judge(reports: list[ItemReport]) -> bool:
    return any(r.judge_vs_experts for r in reports)


def _ceiling_table(title: str, reports: list[ItemReport]) -> Table:
    """Per item: the experts' pairwise ceiling, their alpha over all raters and, with a
    judge, the judge's agreement read against it (means over experts, with CIs)."""
    judged = _has_judge(reports)
    table = Table(title=title)
    columns = ["item", "pairs (raters)", "experts α (all)", "pairwise ρ", "pairwise ICC(2,1)",
               "expert vs rest ρ"]  # fmt: skip
    if judged:
        columns += ["judge vs each expert ρ", "judge vs rest ρ"]
    for col in columns:
        table.add_column(col, justify="left" if col == "item" else "right")
    for r in reports:
        p = r.expert_pairs
        row = [
            r.item,
            f"{p.counted['spearman_rho']} ({p.n_raters})" if p else "—",
            _ci(r.human_alpha_ordinal),
            mean_ci(p, "spearman_rho"),
            mean_ci(p, "icc2_1"),
            mean_ci(r.expert_vs_rest, "spearman_rho"),
        ]
        if judged:
            row += [mean_ci(r.judge_vs_experts, "spearman_rho"),
                    mean_ci(r.judge_vs_rest, "spearman_rho")]  # fmt: skip
        table.add_row(*row)
    return table


def _cell(c: RaterAgreement | None) -> Text:  # type: ignore[type-arg]
    """Spearman's rho (n dialogues); dim when the comparison is not in the mean."""
    if c is None:
        return Text("—")
    return Text(f"{fmt(c.stats.spearman_rho)} ({c.n_dialogues})", style="" if c.in_mean else "dim")


def _by_raters(
    reports: list[ItemReport], field: str
) -> dict[tuple[str, ...], dict[str, RaterAgreement]]:  # type: ignore[type-arg]
    """rater(s) -> item -> comparison, from the `field` agreements of each report."""
    out: dict[tuple[str, ...], dict[str, RaterAgreement]] = {}  # type: ignore[type-arg]
    for r in reports:
        agreements = getattr(r, field)
        for c in agreements.comparisons if agreements else ():
            out.setdefault(c.raters, {})[r.item] = c
    return dict(sorted(out.items()))


def _pairs_table(title: str, reports: list[ItemReport], min_shared: object) -> Table:
    """Spearman's rho of every expert pair on every item: the ceiling's parts."""
    table = Table(
        title=title,
        caption=f"ρ (dialogues both rated); dim: under {min_shared} shared dialogues, "
        "not in the mean",
    )
    table.add_column("pair")
    for r in reports:
        table.add_column(r.item, justify="right")
    for raters, by_item in _by_raters(reports, "expert_pairs").items():
        table.add_row(" · ".join(raters), *(_cell(by_item.get(r.item)) for r in reports))
    return table


def _raters_table(title: str, reports: list[ItemReport]) -> Table:
    """Per expert: leave one out (that expert, and the judge, against the mean of the
    others) and the judge against that expert; Spearman's rho."""
    judged = _has_judge(reports)
    caption = "expert vs the mean of the others" + (
        " / judge vs the same mean; then judge vs the expert" if judged else ""
    )
    table = Table(title=title, caption=caption + " (Spearman ρ, dialogues)")
    table.add_column("expert")
    for r in reports:
        table.add_column(r.item, justify="right")
    rest = _by_raters(reports, "expert_vs_rest")
    judge_rest = _by_raters(reports, "judge_vs_rest")
    judge_each = _by_raters(reports, "judge_vs_experts")
    for raters in sorted({*rest, *judge_each}):
        cells = []
        for r in reports:
            cell = _cell(rest.get(raters, {}).get(r.item))
            if judged:
                cell.append(" / ")
                cell.append(_cell(judge_rest.get(raters, {}).get(r.item)))
                cell.append("; ")
                cell.append(_cell(judge_each.get(raters, {}).get(r.item)))
            cells.append(cell)
        table.add_row(raters[0], *cells)
    return table


def per_expert(r: ItemReport) -> list[tuple[str, list[RaterAgreement | None]]]:  # type: ignore[type-arg]
    """Per expert of one item: that expert vs the rest, the judge vs the same rest, the
    judge vs that expert (None where there is no such comparison)."""
    views = [_by_raters([r], f) for f in ("expert_vs_rest", "judge_vs_rest", "judge_vs_experts")]
    experts = sorted({raters for view in views for raters in view})
    return [(e[0], [view.get(e, {}).get(r.item) for view in views]) for e in experts]


def _agreement_views(
    what: str, reports: list[ItemReport], min_shared: object
) -> list[RenderableType]:
    """The ceiling summary, the pairs and the per-expert table of one list of items."""
    if not reports:
        return []
    return [
        _ceiling_table(f"{what}: expert ceiling, rater identity kept", reports),
        _pairs_table(f"{what}: Spearman ρ by expert pair", reports, min_shared),
        _raters_table(f"{what}: each expert", reports),
    ]


def _items_table(report: CalibrationReport) -> Table:
    level = round(float(report.settings["level"]) * 100)  # type: ignore[arg-type]
    table = Table(title=f"CTRS items: judge vs experts ({level}% CIs, dialogues resampled)")
    columns = (
        "item", "n", "α ord", "ICC(2,1)", "ICC(3,1)", "ρ", "κw", "exact", "±1", "bias",
        "vs mean ICC(2,1)", "experts α", "expert pairs ICC(2,1)", "flag",
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
            mean_ci(r.expert_pairs, "icc2_1"),
            Text("unreliable" if r.flag else "", style="yellow"),
        )
    return table


def _labels_table(report: CalibrationReport) -> Table:
    table = Table(title="Safety labels: judge vs experts")
    for col in ("label", "n", "positives", "accuracy", "precision", "recall", "F1", "κ",
                "judge vs each expert κ", "expert pairs κ", "flag"):  # fmt: skip
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
            mean_ci(r.judge_vs_experts, "cohen_kappa"),
            mean_ci(r.expert_pairs, "cohen_kappa"),
            Text("unreliable" if r.flag else "", style="yellow"),
        )
    return table


def _checks_table(report: CalibrationReport) -> Table:
    checks = report.checks
    assert checks is not None
    table = Table(title="Check questions: raters vs experts")
    for col in ("rater", "n", "agreement", "κ", "appropriate answers"):
        table.add_column(col, justify="left" if col == "rater" else "right")
    if pairs := checks.expert_pairs:
        table.add_row(
            f"expert vs expert (mean of {_plural(pairs.counted['cohen_kappa'], 'pair')})",
            str(sum(c.stats.n for c in pairs.comparisons if c.in_mean)),
            mean_ci(pairs, "accuracy"),
            mean_ci(pairs, "cohen_kappa"),
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
    min_shared = report.settings.get("min_shared_dialogues")
    ctrs = [*report.items, *([report.total] if report.total else [])]
    if report.items:
        parts.append(_items_table(report))
    parts += _agreement_views("CTRS", ctrs, min_shared)
    if report.total:
        parts.append(Text(f"CTRS total: {ceiling_line(report.total)}"))
    parts += _agreement_views("Free criteria (the bench's own rubric)", report.criteria, min_shared)
    for r in report.criteria:
        parts.append(Text(f"{r.item}: {ceiling_line(r)}"))
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
    if report.mi is not None:
        parts += mi_views(report.mi, min_shared)
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
    if report.weights is not None and report.weights.dropped:
        parts.append(
            Text("reward weights: 0 for " + ", ".join(report.weights.dropped), style="yellow")
        )
    for note in report.notes:
        parts.append(Text(f"note: {note}", style="yellow"))
    return Group(*parts)


def _has_ceiling(codes: list[CodeReport]) -> bool:
    return any(c.experts_alpha is not None for c in codes)


def _mi_codes_table(mi: MIReport) -> Table:
    """Per code and group: the judge against the experts' reference on the turns their
    labels decide, and the experts' own agreement where several coded a turn."""
    ceiling = _has_ceiling(mi.codes)
    table = Table(
        title="MI behaviour codes: judge vs experts (turns the experts' labels decide)",
        caption="κ: Cohen's kappa, one code against the rest; groups are sets of codes",
    )
    columns = ["code", "decided", "experts +", "judge +", "precision", "recall", "F1", "κ"]
    if ceiling:
        columns += ["experts α (all)", "expert pairs κ", "judge vs each expert κ"]
    columns.append("note")
    for col in columns:
        table.add_column(col, justify="left" if col in ("code", "note") else "right")
    for c in mi.codes:
        j = c.judge_vs_experts
        row = [
            c.code + (" (group)" if c.level == "group" else ""),
            str(c.decided),
            str(c.expert_positives),
            "—" if c.judge_positives is None else str(c.judge_positives),
            fmt(j.stats.precision) if j else "—",
            fmt(j.stats.recall) if j else "—",
            fmt(j.stats.f1) if j else "—",
            _ci(j.ci.get("cohen_kappa")) if j else "—",
        ]
        if ceiling:
            row += [
                _ci(c.experts_alpha),
                f"{fmt(c.expert_pairs_kappa)} ({c.expert_pairs})" if c.expert_pairs else "—",
                fmt(c.judge_vs_each_expert_kappa),
            ]
        row.append(c.note or "")
        table.add_row(*row)
    return table


def _mi_classes_table(mi: MIReport) -> Table:
    b = mi.behaviour
    assert b is not None
    table = Table(
        title=f"MI behaviour classes: κ {_ci(b.kappa)}, accuracy {_ci(b.accuracy)} over "
        f"{b.n_turns} turns in {_plural(b.n_dialogues, 'dialogue')}",
        caption="rows of the confusion matrix: the experts' class; columns: the judge's",
    )
    for col in ("class", "precision", "recall", "F1", "experts", "judge", *b.classes):
        table.add_column(col, justify="left" if col == "class" else "right")
    for name, row in zip(b.classes, b.confusion, strict=True):
        s = b.per_class[name]
        table.add_row(
            name, fmt(s.precision), fmt(s.recall), fmt(s.f1), str(s.expert_support),
            str(s.judge_support), *map(str, row),
        )  # fmt: skip
    return table


def _mi_indices_table(mi: MIReport) -> Table:
    table = Table(
        title="MI summary indices from the codes (per dialogue; experts: mean over experts)"
    )
    for col in ("index", "dialogues", "judge mean", "experts mean", "ρ judge vs experts",
                "judge AUC (quality)", "experts AUC (quality)"):  # fmt: skip
        table.add_column(col, justify="left" if col == "index" else "right")
    for i in mi.indices:
        table.add_row(
            i.index, str(i.n_dialogues), fmt(i.judge_mean), fmt(i.expert_mean),
            fmt(i.spearman_rho), fmt(i.judge_auc), fmt(i.expert_auc),
        )  # fmt: skip
    return table


def mi_views(mi: MIReport, min_shared: object = None) -> list[RenderableType]:
    """The MI part of the terminal view: codes, classes, indices, separation, globals."""
    parts: list[RenderableType] = []
    c = mi.coverage
    parts.append(
        Text(
            f"MI coding ({mi.rubric}): {c['expert_coded_turns']} expert-coded therapist turns "
            f"in {_plural(c['dialogues_coded'], 'dialogue')} by "
            f"{_plural(c['experts'], 'expert')}; the judge coded {c['judged_turns']} of them"
        )
    )
    if mi.codes:
        parts.append(_mi_codes_table(mi))
    if mi.behaviour is not None:
        parts.append(_mi_classes_table(mi))
    if mi.indices:
        parts.append(_mi_indices_table(mi))
    if s := mi.separation:
        per = ", ".join(f"{k} {fmt(v)}" for k, v in s.global_auc.items())
        parts.append(
            Text(
                f"MI quality separation ({s.n_high} high, {s.n_low} low): AUC {_ci(s.auc)} of "
                f"the {s.score}; technical {fmt(s.technical_auc)}, relational "
                f"{fmt(s.relational_auc)}; per global: {per}"
            )
        )
    parts += _agreement_views("MI global ratings", mi.global_ratings, min_shared)
    for note in mi.notes:
        parts.append(Text(f"note: {note}", style="yellow"))
    return parts


def html_section(report: CalibrationReport) -> str:
    """The calibration section of the HTML report: a fragment, every value escaped."""
    template = html_env().get_template(
        "therapygym.calibration:templates/calibration_section.html.j2"
    )
    html = template.render(
        r=report,
        fmt=fmt,
        fmt_ci=_ci,
        mean_ci=mean_ci,
        ceiling_line=ceiling_line,
        per_expert=per_expert,
    )
    if report.mi is None:
        return html
    mi = html_env().get_template("therapygym.calibration:templates/mi_section.html.j2")
    part = mi.render(mi=report.mi, fmt=fmt, fmt_ci=_ci, mean_ci=mean_ci, ceiling_line=ceiling_line)
    head, sep, tail = html.rpartition("</section>")
    return f"{head}{part}\n{sep}{tail}" if sep else html + part
