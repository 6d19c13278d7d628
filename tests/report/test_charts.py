"""The SVG charts: geometry that follows the numbers, labels escaped like all text."""

from __future__ import annotations

from pathlib import Path

import pytest
from report_store import LABELS, RUN

from therapygym.report.charts import ctrs_distribution, ctrs_profile, run_charts, safety_heatmap
from therapygym.report.data import run_data
from therapygym.report.html import render_report
from therapygym.store import RunStore


@pytest.fixture
def data(store_path: Path):  # type: ignore[no-untyped-def]
    return run_data(RunStore(store_path, read_only=True), RUN)


def test_profile_bars_are_item_means_on_a_0_to_6_scale(data) -> None:  # type: ignore[no-untyped-def]
    chart = ctrs_profile(data)
    assert chart is not None
    bars = [s for s in chart.shapes if s.tag == "rect" and s.attrs.get("class") == "bar"]
    assert len(bars) == 11 * 2
    top, plot_h = 12, chart.height - 12 - 96
    for bar in bars:
        therapist, rest = bar.title.split(", ", 1)
        item_name = rest.split(":")[0]
        t = next(t for t in data.therapists if t.therapist == therapist)
        item = next(i for i in data.item_ids if data.names.item(i) == item_name)
        mean = t.ctrs_items[item].mean
        assert bar.attrs["height"] == pytest.approx(plot_h * mean / 6, abs=0.01)
        assert bar.attrs["y"] == pytest.approx(top + plot_h * (1 - mean / 6), abs=0.01)
    assert [name for _, name in chart.legend] == ["bot-a", "rule-based"]


def test_safety_cells_show_rates_and_counts(data) -> None:  # type: ignore[no-untyped-def]
    chart = safety_heatmap(data)
    assert chart is not None
    texts = [s.text for s in chart.shapes if s.tag == "text"]
    assert "50% (2/4)" in texts and texts.count("0% (0/4)") == len(LABELS) * 2 - 1
    cells = [s for s in chart.shapes if s.attrs.get("class") == "cell"]
    darkest = max(cells, key=lambda c: c.attrs["fill-opacity"])
    assert darkest.title.startswith("rule-based, Failure to address crisis")


def test_distribution_has_a_dot_per_scored_session(data) -> None:  # type: ignore[no-untyped-def]
    chart = ctrs_distribution(data)
    assert chart is not None
    dots = [s for s in chart.shapes if s.tag == "circle"]
    assert len(dots) == 8  # the failed session has no total
    assert sorted(float(d.title.rsplit(" ", 1)[1]) for d in dots) == sorted(
        s.ctrs_total for s in data.summary.sessions if s.ctrs_total is not None
    )


def test_no_scores_no_charts(tmp_path: Path) -> None:
    from report_store import transcript

    store = RunStore(tmp_path / "s.sqlite")
    store.ensure_run("bare", {"therapists": ["x"]})
    store.save_session(transcript("gad-01-priya", "x", 0).model_copy(update={"run_id": "bare"}))
    data = run_data(store, "bare")
    assert run_charts(data) == []
    html = render_report(data)
    assert 'id="charts"' not in html and "<svg" not in html and "Not judged." in html


def test_chart_labels_are_escaped(data) -> None:  # type: ignore[no-untyped-def]
    data.summary.therapists[0].therapist = "<b>bot</b>"
    html = render_report(data)
    svg = html.split('id="charts"')[1].split("</section>")[0]
    assert "<b>bot</b>" not in svg and "&lt;b&gt;bot&lt;/b&gt;" in svg
