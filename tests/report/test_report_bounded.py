"""The report's transcripts are a bounded sample (issue 22, item 5): every session of a
small run; of a larger one, failed and violating sessions first up to a cap, then the
next session of each therapist x patient in turn, with the counts and the viewer command
on the page."""

from __future__ import annotations

import re
from pathlib import Path

from report_store import RUN

from therapygym.records import SessionStatus
from therapygym.report.data import SessionView, report_data, run_data, sample_ids
from therapygym.report.html import render_report
from therapygym.store import RunStore, SessionHead


def _key(sv: SessionView) -> tuple[str, str, int]:
    t = sv.transcript
    return (t.profile_id, t.therapist, t.sample)


def test_a_run_within_the_bound_shows_every_session(store_path: Path) -> None:
    store = RunStore(store_path, read_only=True)
    data = report_data(store, RUN)
    assert [_key(sv) for sv in data.sessions] == [_key(sv) for sv in run_data(store, RUN).sessions]
    assert data.sample is not None and data.sample.complete
    assert (data.sample.shown, data.sample.total) == (9, 9)
    html = render_report(data)
    assert 'id="sample-note"' not in html and ">9 sessions<" in html


def test_a_larger_run_shows_exactly_the_documented_sample(store_path: Path) -> None:
    """The fixture's nine sessions in run order (profile, therapist, sample): dep/bot-a 0,
    1 and 2 (failed), dep/rule-based 0 (violating) and 1, gad/bot-a 0 and 1, gad/rule-based
    0 (violating) and 1. With a bound of 5 and a cap of 2 flagged: one round over the
    pairings with a flagged session (bot-a x dep: the failed one; rule-based x dep: the
    violating one), then rounds over every pairing (bot-a x dep 0, bot-a x gad 0,
    rule-based x dep 0 already shown, rule-based x gad 0) until five."""
    store = RunStore(store_path, read_only=True)
    data = report_data(store, RUN, limit=5, flagged_cap=2)
    assert [_key(sv) for sv in data.sessions] == [
        ("dep-02-emeka", "bot-a", 0),
        ("dep-02-emeka", "bot-a", 2),
        ("dep-02-emeka", "rule-based", 0),
        ("gad-01-priya", "bot-a", 0),
        ("gad-01-priya", "rule-based", 0),
    ]
    assert data.sessions[1].transcript.status == SessionStatus.FAILED
    assert data.sessions[2].violated == data.sessions[4].violated == ["crisis_unaddressed"]
    sample = data.sample
    assert sample is not None and not sample.complete
    assert (sample.shown, sample.total, sample.flagged_shown, sample.flagged_total) == (5, 9, 3, 3)
    # the numbers are still the whole run's
    assert sum(t.sessions for t in data.summary.therapists) == 8

    html = render_report(data)
    note = html.split('id="sample-note">')[1].split("</p>")[0]
    assert "transcripts of <strong>5 of 9 sessions</strong>" in note
    assert "They include 3 of the run's 3 failed or violating sessions: up to 2 of" in note
    assert f"therapygym view --store {store_path}" in note and f"/runs/{RUN}" in note
    assert ">5 of 9 sessions<" in html  # the filter's count
    assert html.count('<details class="session"') == 5
    table = html.split('id="sessions-table"')[1].split("</table>")[0]
    assert table.count("<tr data-therapist=") == 5
    # the sessions shown keep their anchors, turns and evidence links
    for sv in data.sessions:
        assert f'id="{sv.anchor}"' in html and f'href="#{sv.anchor}"' in html
    targets = re.findall(r'class="evidence" href="#([^"]+)"', html)
    assert targets and all(f'<li id="{t}" class="turn ' in html for t in targets)
    shown = {sv.transcript.session_id for sv in data.sessions}
    hidden = {sv.transcript.session_id for sv in run_data(store, RUN).sessions} - shown
    assert hidden and not any(f'id="session-{sid}"' in html for sid in hidden)


def _heads(n: int, flagged_every: int = 0) -> list[SessionHead]:
    return [
        SessionHead(
            session_id=f"s{k:05d}", run_id="r", profile_id=f"p{k % 4}", profile_version=1,
            therapist=f"t{k % 3}", patient="x", sample=k // 12, seed=0, n_turns=2,
            status=SessionStatus.FAILED if flagged_every and k % flagged_every == 0
            else SessionStatus.COMPLETED, error=None,
        )
        for k in range(n)
    ]  # fmt: skip


def test_the_sample_spreads_over_every_pairing() -> None:
    heads = _heads(12_000)
    ids, total, flagged_shown, flagged_total = sample_ids(heads, set(), limit=24)
    assert (len(ids), total, flagged_shown, flagged_total) == (24, 12_000, 0, 0)
    by_id = {h.session_id: h for h in heads}
    pairs = [(by_id[i].therapist, by_id[i].profile_id) for i in ids]
    assert len(set(pairs)) == 12 and all(pairs.count(p) == 2 for p in pairs)
    assert ids == sorted(ids)  # shown in the run's order
    assert sample_ids(heads, set(), limit=24) == (ids, total, 0, 0)  # deterministic


def test_flagged_sessions_come_first_up_to_the_cap_spread_over_pairings() -> None:
    heads = _heads(12_000, flagged_every=10)  # 1,200 failed: k = 0, 10, 20, ...
    violating = {"s00001"}  # a finished session that violated a label
    ids, total, flagged_shown, flagged_total = sample_ids(heads, violating, limit=20, flagged_cap=6)
    assert (len(ids), total, flagged_total) == (20, 12_000, 1_201)
    by_id = {h.session_id: h for h in heads}
    flagged = [i for i in ids if i in violating or by_id[i].status == SessionStatus.FAILED]
    assert len(flagged) == flagged_shown and flagged_shown >= 6
    # the first round over flagged pairings: failed sessions of 6 different pairings
    first = sorted(flagged, key=lambda i: (by_id[i].therapist, by_id[i].profile_id))[:6]
    assert len({(by_id[i].therapist, by_id[i].profile_id) for i in first}) == 6
    # then every pairing of the run is seen
    assert len({(by_id[i].therapist, by_id[i].profile_id) for i in ids}) == 12


def test_a_cap_of_zero_leaves_the_sample_to_the_pairings() -> None:
    heads = _heads(120, flagged_every=2)
    with_cap = sample_ids(heads, set(), limit=12, flagged_cap=0)
    without = sample_ids(_heads(120), set(), limit=12, flagged_cap=0)
    assert with_cap[0] == without[0] and with_cap[3] == 60 and without[3] == 0


def test_the_distribution_chart_stays_small_for_many_sessions(store_path: Path) -> None:
    """Sessions on the same spot share one dot, counted in its title and as opaque as the
    stack it stands for."""
    from therapygym.judges.aggregate import SessionScores
    from therapygym.report.charts import ctrs_distribution

    data = run_data(RunStore(store_path, read_only=True), RUN)
    data.summary.sessions = [
        SessionScores(session_id=f"s{k}", therapist="bot-a", profile_id="p", ctrs_total=30 + k % 2)
        for k in range(1000)
    ]
    chart = ctrs_distribution(data)
    assert chart is not None
    dots = [s for s in chart.shapes if s.tag == "circle"]
    assert len(dots) == 10  # 2 totals x 5 rows
    counts = [int(d.title.split(": ")[1].split(" ")[0]) for d in dots]
    assert sum(counts) == 1000 and all(c == 100 for c in counts)
    assert {d.attrs["fill-opacity"] for d in dots} == {1.0}  # 1 - 0.3^100, rounded
