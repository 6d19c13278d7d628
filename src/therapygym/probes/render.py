"""Probe and scorecard results for people: terminal tables (the judge-robustness battery's
too), and the scorecard section of the HTML report.

It reads finished results only (probes/metrics.py, probes/scorecard_data.py) and imports
nothing that runs sessions or calls a model, so the report can render a `scorecard.json`
without the runner or any backend (the `report-reads-only` import contract). The stigma
tables are in probes/stigma_family.py: their report type sits beside its runner.
"""

from __future__ import annotations

from rich.table import Table

from therapygym.probes.metrics import ProbeReport
from therapygym.probes.scorecard_data import Axis, JudgeBatteryReport, Scorecard
from therapygym.stats import Estimate, format_ci
from therapygym.templates import html_env


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


def safety_lines(card: Scorecard) -> list[str]:
    """Per therapist, how grave the safety judge's findings on the fidelity sessions were:
    the share with a high or critical violation (never competent) and the crisis label's
    violations by severity. Cards written before severities were recorded have none."""
    lines = []
    for therapist, axes in card.therapists.items():
        for axis in axes:
            severe = axis.metrics.get("high_or_critical_violation_rate")
            if axis.name != "protocol fidelity" or not isinstance(severe, Estimate):
                continue
            crisis = axis.metrics.get("crisis_unaddressed_severity") or "none"
            lines.append(
                f"{therapist}: a high or critical safety violation in "
                f"{format_ci(severe, '{:.0%}', n=True)} of sessions; crisis unaddressed: {crisis}"
            )
    return lines


def scorecard_table(card: Scorecard) -> Table:
    """One row per therapist and axis: the number with its CI, the line, the verdict; under
    it, the severity of the safety judge's findings (`safety_lines`)."""
    table = Table(
        title="Five-axis scorecard (95% CIs; thresholds from the battery file)",
        caption="\n".join(safety_lines(card)) or None,
    )
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


SHIFT = "{:+.2f}"  # a battery shift: CTRS normalised mean (0-1) or flag rate, signed


def battery_verdict(passed: bool | None) -> str:
    """An attack kind's verdict in a word: the judge resisted it, was fooled, or no pair
    of it was judged."""
    return "no data" if passed is None else ("robust" if passed else "fooled")


def battery_table(report: JudgeBatteryReport) -> Table:
    """Per attack kind: the shift it caused, how often it fooled the judge, the line and
    the verdict; the battery's notes (an embedded judge, missing pairs) under it."""
    s = report.settings
    table = Table(
        title=f"Judge robustness ({report.battery}; {', '.join(report.judges)}): shift = "
        "attacked - base (CTRS normalised mean, or flag rate for safety), 95% CIs over pairs",
        caption="\n".join(
            [
                f"fooled: CTRS up by more than {s.margin:g} (not_higher), apart by more than "
                f"{s.tolerance:g} (same), or the hidden violation not flagged (safety)",
                *report.notes,
            ]
        ),
    )
    for col in ("attack", "measure", "pairs", "shift", "fooled", "line", "result"):
        table.add_column(col, justify="left" if col in ("attack", "measure", "result") else "right")
    for k in report.kinds:
        colour = "yellow" if k.passed is None else ("green" if k.passed else "red")
        table.add_row(
            k.kind,
            k.measure,
            f"{k.pairs}" + (f" ({k.missing} missing)" if k.missing else ""),
            format_ci(k.shift, SHIFT),
            format_ci(k.fooled, "{:.0%}"),
            f"<= {k.max_fooled:.0%}",
            f"[{colour}]{battery_verdict(k.passed)}[/{colour}]",
        )
    return table


def scorecard_html(card: Scorecard) -> str:
    """The scorecard section of the HTML report (with the judge battery when the card has
    it): a fragment, every value escaped."""
    template = html_env().get_template("therapygym.probes:templates/scorecard_section.html.j2")
    return template.render(
        card=card,
        value=_value,
        percent=_percent,
        safety_lines=safety_lines(card),
        ci=format_ci,
        shift=SHIFT,
        battery_verdict=battery_verdict,
    )
