"""`summarise` streams (issue 22, item 5): the same summary as the in-memory path on the
same store, sessions packed into blocks, the JSON written a session at a time, and the
percentile interval above `stats.BCA_MAX_N`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from therapygym import stats, summary
from therapygym.judges.aggregate import SessionScores
from therapygym.judges.rubric import CTRSRubric, CTRSRubric2, builtin_rubric
from therapygym.records import ScoreRecord, SessionStatus, Transcript, Turn, score_id
from therapygym.stats import bootstrap, mean_ci
from therapygym.store import RunStore
from therapygym.summary import PackedSessions, Summary, summarise, summary_of

CTRS1 = builtin_rubric("ctrs", "1.0")
CTRS2 = builtin_rubric("ctrs", "2.0")
SAFETY = builtin_rubric("safety")
assert isinstance(CTRS1, CTRSRubric) and isinstance(CTRS2, CTRSRubric2)
RUN = "r"
JUDGES = ("judge-a", "judge-b")


def _record(
    sid: str, judge: str, rubric: str, version: str, result: dict | None, **kw: object
) -> ScoreRecord:
    target = kw.pop("target", "")
    return ScoreRecord(
        score_id=score_id(sid, judge, rubric, version, target), session_id=sid, judge=judge,
        rubric_id=rubric, rubric_version=version, prompt_fingerprint="fp", sample=0,
        target=target, result=result, raw_outputs=['{"long": "raw output"}'], **kw,
    )  # fmt: skip


def _units(k: int, sid: str, turns: list[str]) -> list[list[ScoreRecord]]:
    """Every kind of record a summary reads or must leave out: two judges (a panel), CTRS
    under 1.0 and 2.0 (with displaced items), safety with severities, response per turn,
    a check, a failed unit, and a patient rubric."""
    units = []
    for j, judge in enumerate(JUDGES):
        score = (k * 7 + j * 3) % 7
        items1 = {i.id: {"score": score, "rationale": "r", "evidence": []} for i in CTRS1.items}
        units.append([_record(sid, judge, "ctrs", "1.0", {"items": items1})])
        if k % 3:  # some sessions have 2.0 ratings, some of them displacing items
            displaced = set(list(CTRS2.displaceable)[: (k + j) % 3])
            items2 = {
                i.id: {"score": (score + 1) % 7, "rationale": "r", "evidence": []}
                for i in CTRS2.items
                if i.id not in displaced
            }
            result = {"items": items2, "displaced": {i: {"why": "risk"} for i in displaced}}
            units.append([_record(sid, judge, "ctrs", "2.0", result)])
        labels = {
            lb.id: {
                "verdict": ("yes" if (k + j + n) % 5 == 0 else "no")
                if (k + n) % 4
                else "not_applicable",
                "severity": ("low", "medium", "high", "critical")[(k + n) % 4],
                "evidence": [],
                "rationale": "r",
            }
            for n, lb in enumerate(SAFETY.labels)
        }
        units.append([_record(sid, judge, "safety", SAFETY.version, {"labels": labels})])
        units.append(
            [
                _record(
                    sid,
                    judge,
                    "response",
                    "1.0",
                    target=t,
                    result={"dimensions": {"empathy": (k + n) % 5 + 1, "relevance": 3}},
                )
                for n, t in enumerate(turns)
            ]
        )
        answers = {"q1": {"answer": ("yes", "no")[(k + j) % 2]}}
        units.append([_record(sid, judge, "check", "1.0", {"answers": answers})])
    if k % 4 == 1:
        units.append([_record(sid, "judge-a", "check", "2.0", None, error="invalid output")])
    units.append([_record(sid, "judge-c", "patient_fidelity", "1.0", {"items": {}})])
    return units


def build(path: Path, sessions: int = 14) -> RunStore:
    store = RunStore(path)
    store.ensure_run(RUN, {})
    for k in range(sessions):
        sid = f"s{k:03d}"
        turns = [
            Turn(id=f"{sid}:{i}", index=i, speaker="patient" if i % 2 == 0 else "therapist",
                 text=f"line {i}")
            for i in range(4)
        ]  # fmt: skip
        failed = k % 9 == 8
        store.save_session(
            Transcript(
                session_id=sid, run_id=RUN, profile_id=f"p{k % 3}", therapist=f"t{k % 2}",
                patient="x", sample=k // 6, turns=turns,
                status=SessionStatus.FAILED if failed else SessionStatus.COMPLETED,
            )
        )  # fmt: skip
        for unit in _units(k, sid, [t.id for t in turns if t.speaker == "therapist"]):
            store.save_scores(unit)
    return store


def in_memory(
    store: RunStore, how: summary.Aggregation = "mean", judges: list[str] | None = None
) -> Summary:
    """The summary as it was computed before streaming: every record read at once."""
    records = summary.judged_by(RUN, store.scores(RUN), judges)
    provenance = store.run(RUN).provenance
    return summary_of(RUN, store.session_heads(RUN), records, how, provenance)


@pytest.mark.parametrize("how", ["mean", "median", "majority"])
@pytest.mark.parametrize("judges", [None, ["judge-a"], ["judge-b"]])
def test_streaming_equals_the_in_memory_summary(
    tmp_path: Path,
    how: summary.Aggregation,
    judges: list[str] | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(summary, "PACK_SIZE", 4)  # several blocks and a part-filled one
    store = build(tmp_path / "s.sqlite")
    streamed = summarise(store, RUN, how, judges=judges)
    assert isinstance(streamed.sessions, PackedSessions)
    assert streamed.to_json() == in_memory(store, how, judges).to_json()
    body = json.loads(streamed.to_json())
    assert body["judges"] == (judges or list(JUDGES))  # judge-c judged the patient only
    assert len(body["sessions"]) == 13 and body["therapists"][0]["ctrs_version"] == "2.0"
    assert any(t["ctrs_displaced"] for t in body["therapists"])


def test_the_therapist_numbers_are_the_session_lists_intervals(tmp_path: Path) -> None:
    """The tally's columns give the intervals of the per-session lists, as the summary
    computed them before (one list per estimate over the therapist's sessions, in order,
    None where a session has no value)."""
    got = summarise(build(tmp_path / "s.sqlite"), RUN)
    for t in got.therapists:
        mine = [s for s in got.sessions if s.therapist == t.therapist]
        assert t.sessions == len(mine)
        assert t.ctrs_total == mean_ci([s.ctrs_total for s in mine])
        assert t.violation_rate == mean_ci([s.violation_share for s in mine])
        for label, est in t.label_violation_rate.items():
            assert est == mean_ci(
                [float(s.safety[label].verdict == "yes") for s in mine
                 if label in s.safety and s.safety[label].verdict != "not_applicable"]
            )  # fmt: skip
        assert t.response["empathy"] == mean_ci([s.response["empathy"].value for s in mine])
        assert t.judge_errors == sum(s.judge_errors for s in mine)


def test_an_unknown_judge_is_refused_before_reading(tmp_path: Path) -> None:
    store = build(tmp_path / "s.sqlite", sessions=2)
    known = r"no scores by judge judge-z.*judge-a, judge-b, judge-c"
    with pytest.raises(summary.StoreError, match=known):
        summarise(store, RUN, judges=["judge-z"])


def test_packed_sessions_behave_as_a_sequence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(summary, "PACK_SIZE", 3)
    packed = PackedSessions()
    made = [
        SessionScores(session_id=f"s{k}", therapist="t", profile_id="p", ctrs_total=k)
        for k in range(8)
    ]
    for s in made:
        packed.append(s)
    assert len(packed) == 8 and list(packed) == made
    assert packed[0] == made[0] and packed[4] == made[4] and packed[-1] == made[7]
    assert packed[2:6] == made[2:6]
    with pytest.raises(IndexError):
        packed[8]
    assert list(PackedSessions()) == []
    assert packed == made and made == packed and packed != made[:7]
    again = PackedSessions()
    for s in made:
        again.append(s)
    assert again == packed
    again.append(made[0])
    assert again != packed


def test_the_json_is_written_a_session_at_a_time_to_the_byte(tmp_path: Path) -> None:
    got = summarise(build(tmp_path / "s.sqlite", sessions=5), RUN)
    whole = {"run_id": RUN, "judges": got.judges,
             "therapists": [t.model_dump(mode="json") for t in got.therapists],
             "sessions": [s.model_dump(mode="json") for s in got.sessions]}  # fmt: skip
    assert got.to_json() == json.dumps(whole, indent=2)
    assert got.write_json(tmp_path / "summary.json").read_text(encoding="utf-8") == got.to_json()
    empty = Summary(run_id=RUN, judges=[], sessions=[], therapists=[])
    assert json.loads(empty.to_json())["sessions"] == []


# -- the interval above BCA_MAX_N -------------------------------------------------------------


def test_bca_below_the_threshold_and_percentile_above(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    values = [float(v) for v in rng.integers(0, 67, size=400)]

    def resampled(method: stats.Method) -> stats.Estimate:
        data = np.asarray(values)
        (ci,) = bootstrap(lambda i: {"m": data[i].mean(axis=-1)}, len(data), method=method).values()
        return ci

    bca = resampled("BCa")
    assert (mean_ci(values).low, mean_ci(values).high) == (bca.low, bca.high)
    monkeypatch.setattr(stats, "BCA_MAX_N", 399)
    counted = mean_ci(values)
    index = resampled("percentile")
    # resampled as counts of the 67 distinct values: the same distribution as resampling
    # indices (not the same draws), so the ends agree to Monte Carlo error
    assert counted.low == pytest.approx(index.low, abs=0.3)
    assert counted.high == pytest.approx(index.high, abs=0.3)
    assert (counted.low, counted.high) != (bca.low, bca.high)
    assert counted.mean == bca.mean


def test_data_with_many_distinct_values_are_resampled_by_index(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stats, "BCA_MAX_N", 10)
    values = list(np.random.default_rng(5).normal(size=300))
    data = np.asarray(values)
    (index,) = bootstrap(lambda i: {"m": data[i].mean(axis=-1)}, 300, method="percentile").values()
    got = mean_ci(values)
    assert (got.low, got.high) == (index.low, index.high)


def test_a_rare_rate_above_the_threshold_has_a_sound_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stats, "BCA_MAX_N", 100)
    rare = [1.0] * 3 + [0.0] * 2997
    got = mean_ci(rare)
    assert got.mean == pytest.approx(0.001)
    assert got.low is not None and got.high is not None
    assert 0.0 <= got.low < 0.001 < got.high < 0.003
