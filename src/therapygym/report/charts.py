"""Static charts as inline SVG, drawn on the server: no JavaScript, no CDN, no fonts.

Each chart is a list of shapes (rect, line, circle, text) with their attributes,
computed here from the run's summary and written out by one autoescaped template
(`templates/chart.svg.j2`), so every label (therapist names, item names) is escaped like
any other text. Three charts: the CTRS item profile per therapist (means with their 95%
CIs), safety violation rates per label and therapist (a heat map with counts), and the
distribution of session CTRS totals per therapist.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from therapygym.report.data import RunData
from therapygym.stats import format_ci

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000")
GRID = "#d0d0d0"
INK = "#222222"
MUTED = "#666666"
FONT = 11


@dataclass
class Shape:
    tag: str  # rect, line, circle, text, polyline
    attrs: dict[str, str | float]
    text: str = ""
    title: str = ""  # a tooltip


@dataclass
class Chart:
    id: str
    title: str
    description: str
    width: int
    height: int
    shapes: list[Shape] = field(default_factory=list)
    legend: list[tuple[str, str]] = field(default_factory=list)  # (colour, label)

    def add(self, tag: str, text: str = "", title: str = "", **attrs: str | float) -> Shape:
        names = {k: k.rstrip("_").replace("_", "-") for k in attrs}  # class_ -> class
        shape = Shape(tag, {names[k]: _num(v) for k, v in attrs.items()}, text, title)
        self.shapes.append(shape)
        return shape


def _num(v: str | float) -> str | float:
    return round(v, 2) if isinstance(v, float) else v


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def ctrs_profile(data: RunData) -> Chart | None:
    """Per CTRS item, each therapist's mean (0-6) as a bar with its 95% CI."""
    items = data.item_ids
    therapists = data.therapists
    if not items or not therapists:
        return None
    left, right, top, bottom = 36, 12, 12, 96
    slot = max(14, min(22, 220 // len(therapists)))
    group = slot * len(therapists) + 14
    width = left + right + group * len(items)
    height = 300
    plot_h = height - top - bottom
    chart = Chart(
        id="chart-ctrs-profile",
        title="CTRS item profile",
        description="Mean score per CTRS item (0-6) for each therapist, with 95% bootstrap "
        "confidence intervals over sessions.",
        width=width,
        height=height,
        legend=[(colour(i), t.therapist) for i, t in enumerate(therapists)],
    )

    def y(v: float) -> float:
        return top + plot_h * (1 - v / 6)

    for tick in range(7):
        chart.add("line", x1=left, x2=width - right, y1=y(tick), y2=y(tick), stroke=GRID)
        chart.add("text", str(tick), x=left - 6, y=y(tick) + 4, text_anchor="end", fill=MUTED)
    for g, item in enumerate(items):
        x0 = left + g * group + 7
        for i, t in enumerate(therapists):
            e = t.ctrs_items.get(item)
            if e is None or e.mean is None:
                continue
            x = x0 + i * slot
            tip = f"{t.therapist}, {data.names.item(item)}: {format_ci(e, '{:.2f}', n=True)}"
            chart.add(
                "rect",
                title=tip,
                x=x + 1,
                y=y(e.mean),
                width=slot - 2,
                height=max(0.5, plot_h * e.mean / 6),
                fill=colour(i),
                class_="bar",
            )
            if e.low is not None and e.high is not None and e.high > e.low:
                cx = x + slot / 2
                chart.add("line", x1=cx, x2=cx, y1=y(e.low), y2=y(e.high), stroke=INK)
                for v in (e.low, e.high):
                    chart.add("line", x1=cx - 3, x2=cx + 3, y1=y(v), y2=y(v), stroke=INK)
        number = data.names.item_numbers.get(item)
        label = data.names.items.get(item, item)
        cx = x0 + slot * len(therapists) / 2
        chart.add("text", str(number or ""), x=cx, y=height - bottom + 14, text_anchor="middle")
        short = label if len(label) <= 18 else label[:17] + "…"
        chart.add(
            "text",
            short,
            title=label,
            x=cx,
            y=height - bottom + 26,
            text_anchor="end",
            transform=f"rotate(-35 {cx:.1f} {height - bottom + 26})",
            fill=MUTED,
        )
    return chart


def safety_heatmap(data: RunData) -> Chart | None:
    """Per safety label (rows) and therapist (columns): the share of sessions where the
    label applied and was violated, with the counts."""
    labels = data.label_ids
    therapists = data.therapists
    if not labels or not therapists:
        return None
    longest = max(len(data.names.label(lb)) for lb in labels)
    label_w, cell_w, cell_h, top = min(380, int(6.2 * longest) + 20), 110, 24, 40
    width = label_w + cell_w * len(therapists) + 8
    height = top + cell_h * len(labels) + 8
    chart = Chart(
        id="chart-safety",
        title="Safety labels per therapist",
        description="Share of sessions, among those where the label applied, that the judges "
        "labelled a violation; darker is worse. Cells read violations / sessions judged.",
        width=width,
        height=height,
    )
    for j, t in enumerate(therapists):
        cx = label_w + j * cell_w + cell_w / 2
        name = t.therapist if len(t.therapist) <= 16 else t.therapist[:15] + "…"
        chart.add("text", name, title=t.therapist, x=cx, y=top - 10, text_anchor="middle")
    for i, lb in enumerate(labels):
        y0 = top + i * cell_h
        chart.add("text", data.names.label(lb), x=label_w - 8, y=y0 + 16, text_anchor="end")
        for j, t in enumerate(therapists):
            x0 = label_w + j * cell_w
            e = t.label_violation_rate.get(lb)
            if e is None or e.mean is None:
                chart.add(
                    "rect", x=x0 + 1, y=y0 + 1, width=cell_w - 2, height=cell_h - 2, fill="#f4f4f4"
                )
                chart.add("text", "n/a", x=x0 + cell_w / 2, y=y0 + 16, text_anchor="middle",
                          fill=MUTED)  # fmt: skip
                continue
            violated = round(e.mean * e.n)
            tip = f"{t.therapist}, {data.names.label(lb)}: {format_ci(e, '{:.0%}', n=True)}"
            chart.add(
                "rect",
                title=tip,
                x=x0 + 1,
                y=y0 + 1,
                width=cell_w - 2,
                height=cell_h - 2,
                fill="#c0392b",
                fill_opacity=0.04 + 0.86 * e.mean,
                class_="cell",
            )
            chart.add(
                "text",
                f"{e.mean:.0%} ({violated}/{e.n})",
                x=x0 + cell_w / 2,
                y=y0 + 16,
                text_anchor="middle",
                fill="#ffffff" if e.mean > 0.55 else INK,
            )
    return chart


def ctrs_distribution(data: RunData) -> Chart | None:
    """Each session's CTRS total (0-66) as a dot, one row per therapist, with the mean,
    its 95% CI and a line at 40, the CTRS competence norm for 50-minute sessions (not
    validated for short ones, so labelled as that norm). Sessions drawn on the same spot
    share one dot (its title counts them): 100,000 sessions draw a few hundred dots."""
    therapists = data.therapists
    totals: dict[str, list[float]] = {t.therapist: [] for t in therapists}
    for s in data.summary.sessions:
        if s.ctrs_total is not None and s.therapist in totals:
            totals[s.therapist].append(s.ctrs_total)
    if not any(totals.values()):
        return None
    left, right, top, row_h = 170, 16, 14, 40
    width = 720
    plot_w = width - left - right
    height = top + row_h * len(therapists) + 34
    chart = Chart(
        id="chart-ctrs-distribution",
        title="Distribution of session CTRS totals",
        description="Each dot is one session's CTRS total (0-66; sessions with all 11 items "
        "scored, prorated over the items scored when a risk pivot displaced some). The black "
        "bar is the therapist's mean with its 95% CI; the dashed line is 40, the competence "
        "norm for 50-minute sessions (Beck), not validated for short sessions.",
        width=width,
        height=height,
    )

    def x(v: float) -> float:
        return left + plot_w * v / 66

    axis_y = top + row_h * len(therapists)
    for tick in range(0, 67, 11):
        chart.add("line", x1=x(tick), x2=x(tick), y1=top, y2=axis_y, stroke=GRID)
        chart.add("text", str(tick), x=x(tick), y=axis_y + 14, text_anchor="middle", fill=MUTED)
    chart.add(
        "line", x1=x(40), x2=x(40), y1=top, y2=axis_y, stroke="#c0392b", stroke_dasharray="4 3"
    )
    chart.add("text", "40: 50-minute-session norm", x=x(40) + 4, y=axis_y + 28, fill="#c0392b")
    for i, t in enumerate(therapists):
        cy = top + i * row_h + row_h / 2
        name = t.therapist if len(t.therapist) <= 24 else t.therapist[:23] + "…"
        chart.add("text", name, title=t.therapist, x=left - 10, y=cy + 4, text_anchor="end")
        # equal totals spread over 5 rows (deterministically); the sessions that fall on the
        # same spot are drawn as one dot, as opaque as their stack of 0.7-opaque dots would
        # be, so the chart's size is bounded by the distinct totals, not the sessions
        stacks: dict[tuple[float, int], int] = {}
        for k, v in enumerate(sorted(totals[t.therapist])):
            stacks[(v, (k * 7) % 5)] = stacks.get((v, (k * 7) % 5), 0) + 1
        for (v, row), n in stacks.items():
            chart.add(
                "circle",
                title=f"{t.therapist}: session total {v:g}"
                if n == 1
                else f"{t.therapist}: {n:,} sessions with total {v:g}",
                cx=x(v),
                cy=cy + (row - 2) * 3.0,
                r=4,
                fill=colour(i),
                fill_opacity=0.7 if n == 1 else round(1 - 0.3**n, 3),
                class_="dot",
            )
        e = t.ctrs_total
        if e.mean is not None:
            if e.low is not None and e.high is not None:
                chart.add("line", x1=x(e.low), x2=x(e.high), y1=cy + 13, y2=cy + 13, stroke=INK,
                          stroke_width=2)  # fmt: skip
            chart.add(
                "rect",
                title=f"{t.therapist} mean: {format_ci(e, '{:.1f}', n=True)}",
                x=x(e.mean) - 1.5,
                y=cy + 7,
                width=3,
                height=12,
                fill=INK,
            )
    return chart


def run_charts(data: RunData) -> list[Chart]:
    """The report's charts that have data to show."""
    charts = (ctrs_profile(data), safety_heatmap(data), ctrs_distribution(data))
    return [c for c in charts if c is not None]
