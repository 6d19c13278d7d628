"""Probe and scorecard results for people: terminal tables, and the scorecard section of
the HTML report."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.table import Table

from therapygym.probes.metrics import ProbeReport
from therapygym.stats import Estimate, format_ci
from therapygym.templates import html_env

if TYPE_CHECKING:  # the probe command needs no scorecard machinery
    from therapygym.probes.scorecard import Axis, Scorecard
    from therapygym.probes.stigma import StigmaReport


def probe_table(report: ProbeReport) -> Table:
    """Appropriate-reply rate per metric and group (condition or severity), per therapist."""
    therapists = sorted({r.therapist for r in report.rows})
    table = Table(
        title=f"{report.family} probes ({report.probe_set}): share of appropriate replies, "
        "95% CIs; missing = not delivered or not judged"
    )
    table.add_column("metric")
    table.add_column("group")
    for t in therapists:
        table.add_column(t, justify="right")
    cells = {(r.therapist, r.metric, r.group): r for r in report.rows + report.overall}
    # per metric: its groups, then its overall row
    keys = sorted(
        {(r.metric, r.group) for r in report.rows + report.overall},
        key=lambda k: (k[0], k[1] == "all", k[1]),
    )
    for metric, group in keys:
        row = [metric, group]
        for t in therapists:
            cell = cells.get((t, metric, group))
            text = format_ci(cell.rate if cell else None, "{:.0%}", n=True)
            if cell and cell.missing:
                text += f", {cell.missing} missing"
            row.append(text)
        table.add_row(*row, end_section=group == "all")
    return table


def _value(e: Estimate | None, percent: bool) -> str:
    return format_ci(e, "{:.0%}" if percent else "{:.2f}")


def _percent(axis: Axis) -> bool:
    return axis.name in ("hallucination risk", "crisis safety")


def scorecard_table(card: Scorecard) -> Table:
    """One row per therapist and axis: the number with its CI, the line, the verdict."""
    table = Table(title="Five-axis scorecard (95% CIs; thresholds from the battery file)")
    for col in ("therapist", "axis", "measure", "value", "threshold", "result"):
        table.add_column(col, justify="right" if col in ("value", "threshold") else "left")
    for therapist, axes in card.therapists.items():
        for i, axis in enumerate(axes):
            verdict = {True: "[green]pass[/green]", False: "[red]fail[/red]"}.get(
                axis.passed, "[yellow]no data[/yellow]"
            )
            limit = f"{axis.threshold:.0%}" if _percent(axis) else f"{axis.threshold:g}"
            table.add_row(
                therapist if i == 0 else "",
                axis.name,
                axis.headline,
                _value(axis.value, _percent(axis)),
                f"{axis.direction} {limit}",
                verdict,
                end_section=i == len(axes) - 1,
            )
    return table


def scorecard_html(card: Scorecard) -> str:
    """The scorecard section of the HTML report: a fragment, every value escaped."""
    template = html_env().get_template("therapygym.probes:templates/scorecard_section.html.j2")
    return template.render(card=card, value=_value, percent=_percent)


def stigma_table(report: StigmaReport) -> Table:
    """Stigma index per therapist and condition, its difference from the control, and how
    many replies could not be read as an answer."""
    table = Table(
        title=f"Stigma ({report.stigma_set}, {report.persons} persons): index 0-1 with 95% CIs; "
        f"control = {report.control}"
    )
    for col in ("therapist", "condition", "index", "vs control", "at stigmatising end",
                "parsed", "don't know", "missing", "failed"):  # fmt: skip
        table.add_column(col, justify="left" if col in ("therapist", "condition") else "right")
    for therapist in report.therapists:
        rows = [r for r in report.index if r.therapist == therapist and r.group == "all"]
        for i, r in enumerate(rows):
            table.add_row(
                therapist if i == 0 else "",
                r.condition,
                _value(r.index, False),
                _value(r.index_vs_control, False),
                _value(r.share, True),
                str(r.counts.parsed),
                str(r.counts.dont_know),
                str(r.counts.missing),
                str(r.counts.failed),
                end_section=i == len(rows) - 1,
            )
    return table


def human_table(report: StigmaReport) -> Table:
    """The published human survey beside the therapist (Moore et al. stimuli only)."""
    table = Table(title="Share at the stigmatising end: therapist vs human survey (2018)")
    for col in ("therapist", "condition", "question", "human %", "therapist %", "difference"):
        table.add_column(col, justify="right" if "%" in col or col == "difference" else "left")
    for r in report.human:
        llm = r.llm_percent
        table.add_row(
            r.therapist,
            r.condition,
            r.question,
            "—" if r.human_percent is None else f"{r.human_percent:.0f}",
            "—" if llm.mean is None else f"{llm.mean:.0f}",
            "—" if r.difference is None else f"{r.difference:+.0f}",
        )
    return table
