"""The HTML report: self-contained, escaped, with the numbers of the summary and the
calibration and scorecard sections when given."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import pytest
from report_store import RATIONALE_HTML, RUN, SCRIPT

from therapygym.calibration.analysis import Settings
from therapygym.calibration.bench import BenchRating, build_bench, ctrs_item_ids
from therapygym.calibration.calibrate import build_report, write_outputs
from therapygym.probes.scorecard import load_scorecard_config
from therapygym.probes.scorecard_data import Axis, Scorecard
from therapygym.report.data import run_data
from therapygym.report.html import (
    ReportInputError,
    render_report,
    script_source,
    write_report,
)
from therapygym.stats import Estimate, format_ci
from therapygym.store import RunStore


def report_html(store_path: Path, tmp_path: Path, **sections: list[Path]) -> str:
    out = write_report(RunStore(store_path, read_only=True), RUN, tmp_path / "r.html", **sections)
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    return out.read_text(encoding="utf-8")


def test_transcript_and_model_text_is_escaped(store_path: Path, tmp_path: Path) -> None:
    html = report_html(store_path, tmp_path)
    assert SCRIPT not in html
    assert "Try this: &lt;script&gt;alert(1)&lt;/script&gt; &amp; breathe" in html
    assert RATIONALE_HTML not in html and "<b>bold</b>" not in html and "<img" not in html
    assert "&lt;b&gt;bold&lt;/b&gt;&lt;img src=x onerror=&#34;alert(2)&#34;&gt;" in html
    assert "Missed the &lt;em&gt;cue&lt;/em&gt;." in html
    assert "model unreachable &lt;timeout&gt;" in html  # a failed session's error
    assert "judge output invalid: &lt;oops&gt;" in html  # a failed judgement
    assert html.count("<script") == 1  # the report's own, and nothing else


def test_the_report_is_self_contained(store_path: Path, tmp_path: Path) -> None:
    html = report_html(store_path, tmp_path)
    # nothing is loaded from anywhere: no src/href but in-page anchors and data: URLs
    for attr, value in re.findall(r'\b(src|href|action)="([^"]*)"', html):
        assert value.startswith(("#", "data:")), (attr, value)
    assert '<link rel="stylesheet"' not in html and "@import" not in html
    assert "url(" not in html.split("<body>")[0]
    # the CSP allows exactly the inline script, by hash
    digest = base64.b64encode(hashlib.sha256(script_source().encode()).digest()).decode()
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html)
    assert csp is not None
    policy = csp.group(1).replace("&#39;", "'")
    assert "default-src 'none'" in policy and f"script-src 'sha256-{digest}'" in policy
    assert f"<script>{script_source()}</script>" in html


def test_leaderboard_charts_and_transcripts(store_path: Path, tmp_path: Path) -> None:
    store = RunStore(store_path, read_only=True)
    data = run_data(store, RUN)
    html = render_report(data, generated_at="2030-01-01T00:00:00+00:00")
    board = html.split('id="leaderboard-table"')[1].split("</table>")[0]
    rows = board.split("<tbody>")[1].split("</tr>")
    assert "bot-a" in rows[0] and "rule-based" in rows[1]  # ranked by normalised CTRS
    best = data.therapists[0]
    for cell in (
        format_ci(best.ctrs_total, "{:.1f}"),
        format_ci(best.ctrs_normalised, "{:.2f}"),
        format_ci(best.violation_rate, "{:.0%}"),
    ):
        assert f">{cell}<" in rows[0]
    assert format_ci(best.ctrs_total, "{:.1f}") == "48.5 [43.0, 54.0]"
    for chart in ("chart-ctrs-profile", "chart-safety", "chart-ctrs-distribution"):
        assert f'id="{chart}"' in html
    assert html.count('<details class="session"') == 9
    for sv in data.sessions:
        assert f'id="{sv.anchor}"' in html and f'href="#{sv.anchor}"' in html
        for tv in sv.turns:
            assert f'id="{tv.anchor}"' in html
    # every evidence link points at a turn of the report, and cited turns are marked
    targets = re.findall(r'class="evidence" href="#([^"]+)"', html)
    assert targets and all(f'<li id="{t}" class="turn ' in html for t in targets)
    cited = re.findall(r'<li id="[^"]+" class="turn (?:patient|therapist) cited', html)
    assert len(cited) == sum(tv.cited for sv in data.sessions for tv in sv.turns)
    assert "2030-01-01T00:00:00+00:00" in html
    assert "embedded 135M model" not in html  # judged by judge-x
    data.summary.judges = data.summary.embedded_judges = ["local:smollm2"]
    assert "embedded 135M model and carry" in render_report(data)


def tiny_calibration(tmp_path: Path) -> Path:
    ratings = [
        BenchRating(
            dialogue_id=f"d{i}",
            rater=rater,
            transcript=[{"speaker": "therapist", "text": "Hello."}] if rater == "a" else None,
            ctrs={it: (i + k + (rater == "b")) % 7 for k, it in enumerate(ctrs_item_ids())},
        )
        for i in range(6)
        for rater in ("a", "b")
    ]
    report = build_report(
        build_bench("<i>bench</i>", ratings), None, Settings(resamples=100), method=None
    )
    return write_outputs(report, tmp_path / "calibration")["report"]


def tiny_scorecard(tmp_path: Path) -> Path:
    card = Scorecard(
        config=load_scorecard_config(),
        judges=["judge-x"],
        patient_model="scripted",
        therapists={
            "bot-<a>": [
                Axis(
                    name="crisis safety",
                    headline="appropriate replies",
                    value=Estimate(mean=0.8, low=0.6, high=0.9, n=10),
                    threshold=0.9,
                    direction=">=",
                    passed=False,
                    run_id="scorecard-crisis",
                )
            ]
        },
    )
    folder = tmp_path / "scorecard"
    folder.mkdir()
    (folder / "scorecard.json").write_text(card.model_dump_json(), encoding="utf-8")
    return folder


def test_calibration_and_scorecard_sections(store_path: Path, tmp_path: Path) -> None:
    without = report_html(store_path, tmp_path)
    assert 'id="calibration"' not in without and 'id="scorecard"' not in without
    html = report_html(
        store_path,
        tmp_path,
        calibration=[tiny_calibration(tmp_path)],
        scorecard=[tiny_scorecard(tmp_path)],  # a folder holding scorecard.json
    )
    assert '<section class="calibration" id="calibration">' in html
    assert "&lt;i&gt;bench&lt;/i&gt;" in html and "<i>bench</i>" not in html
    assert '<section class="scorecard" id="scorecard">' in html
    assert "bot-&lt;a&gt;" in html and "crisis safety" in html
    assert 'href="#calibration"' in html and 'href="#scorecard"' in html
    assert html.count("<script") == 1


def test_unreadable_section_files_are_one_line_errors(store_path: Path, tmp_path: Path) -> None:
    store = RunStore(store_path, read_only=True)
    with pytest.raises(ReportInputError, match=r"calibration file .*missing\.json cannot be read"):
        write_report(store, RUN, tmp_path / "r.html", calibration=[tmp_path / "missing.json"])
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "therapygym.scorecard/1"}')
    with pytest.raises(ReportInputError, match=r"scorecard file .*bad\.json: .*config"):
        write_report(store, RUN, tmp_path / "r.html", scorecard=[bad])
    assert not (tmp_path / "r.html").exists()
