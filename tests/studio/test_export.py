"""Export round trip: a tiny study rated by hand, exported with `studio export`, gives
through `calibrate --humans-only` the figures computed here by hand, and the same as the
studio's live agreement; the consensus never joins the experts; no token leaves."""

from __future__ import annotations

import json
from itertools import combinations
from pathlib import Path

import numpy as np
import pytest
from clirun import cli
from study_store import RUN, answer_rest, make_store

from therapygym.calibration.analysis import Settings
from therapygym.calibration.bench import read_bench_jsonl
from therapygym.judges.rubric import SafetyRubric, rubric_by_ref
from therapygym.studio.ratings import Studio
from therapygym.studio.study import CreatedStudy, StudyPlan, create_study

# ann's and bob's scores of six sessions (in session id order); every other item they
# answer alike (`answer_rest`: each other CTRS item 4, each other safety label not violated)
AGENDA = {"ann": [0, 2, 4, 6, 3, 5], "bob": [1, 2, 4, 5, 3, 6]}
CRISIS = {"ann": [1, 0, 0, 1, 0, 0], "bob": [1, 0, 1, 1, 0, 0]}
RESAMPLES = 200
SAFETY = rubric_by_ref("safety@2.0")
assert isinstance(SAFETY, SafetyRubric)
LABELS = [lb.id for lb in SAFETY.labels]


def icc2_1(x: np.ndarray) -> float:
    """Shrout & Fleiss ICC(2,1) from the two-way ANOVA mean squares (targets x raters)."""
    n, k = x.shape
    grand = x.mean()
    msr = k * ((x.mean(axis=1) - grand) ** 2).sum() / (n - 1)
    msc = n * ((x.mean(axis=0) - grand) ** 2).sum() / (k - 1)
    resid = x - x.mean(axis=1, keepdims=True) - x.mean(axis=0, keepdims=True) + grand
    mse = (resid**2).sum() / ((n - 1) * (k - 1))
    return float((msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n))


def interval_alpha(a: list[int], b: list[int]) -> float:
    """Krippendorff's interval alpha for two raters without gaps: 1 - D_o / D_e, D_o the
    mean squared difference within units, D_e over every pair of the pooled values."""
    values = np.array(a + b, dtype=float)
    n = len(values)
    observed = 2 * sum((x - y) ** 2 for x, y in zip(a, b, strict=True)) / n
    expected = sum(2 * (x - y) ** 2 for x, y in combinations(values, 2)) / (n * (n - 1))
    return 1 - observed / expected


@pytest.fixture
def rated(tmp_path: Path) -> tuple[Path, CreatedStudy, list[str]]:
    """Seven sessions rated by ann and bob: six submitted as AGENDA and CRISIS say (and
    medication advice not applicable), every other item answered alike, with evidence and
    a note on the first; one left open; a consensus on the first."""
    path = tmp_path / "store.sqlite"
    store = make_store(path)
    plan = StudyPlan.parse(study_id="s1", runs=(RUN,), raters=("ann", "bob"), double=1.0, n=7)
    created = create_study(store, plan)
    store.close()
    studio = Studio(path)
    sessions = sorted(a.session_id for a in studio.assignments("s1", "ann"))
    done, open_one = sessions[:6], sessions[6]
    for rater in ("ann", "bob"):
        for k, sid in enumerate(done):
            turns = [t.id for t in studio.session_for("s1", rater, sid).turns]
            cited = [turns[3], turns[1]] if (k, rater) == (0, "ann") else []
            note = "sets no focus" if cited else None
            studio.save_rating("s1", rater, sid, "ctrs:agenda", AGENDA[rater][k], cited, note)
            studio.save_rating("s1", rater, sid, "safety:crisis_unaddressed", CRISIS[rater][k])
            studio.save_rating("s1", rater, sid, "safety:medication_advice", None, na=True)
            answer_rest(studio, "s1", rater, sid)
            studio.submit("s1", rater, sid)
        studio.save_rating("s1", rater, open_one, "ctrs:agenda", 6)  # never submitted
    studio.save_consensus("s1", done[0], "ctrs:agenda", 1, note="talked it through")
    studio.close()
    return path, created, done


def test_the_export_round_trips_through_calibrate_humans_only(
    rated: tuple[Path, CreatedStudy, list[str]], tmp_path: Path
) -> None:
    path, created, done = rated
    out = tmp_path / "bench.jsonl"
    ran = cli("studio", "export", "s1", "-o", str(out), "--store", str(path))
    assert ran.code == 0, ran.stderr
    assert "wrote 12 ratings and 1 consensus ratings of 6 sessions" in ran.stdout
    text = out.read_text()
    for token in (*created.tokens.values(), created.admin_token):
        assert token not in text

    bench = read_bench_jsonl(out)
    assert bench.summary() == {
        "dialogues": 6, "ratings": 13, "human_raters": 2, "model_raters": 1,
        "multiply_rated_dialogues": 6, "with_transcript": 6,
    }  # fmt: skip
    first = {r.rater: r for r in bench.dialogues[done[0]].ratings}
    assert first["ann"].meta["evidence.ctrs:agenda"] == "1,3"
    assert first["ann"].rationale == "ctrs:agenda: sets no focus"
    assert first["ann"].meta["study"] == "s1"
    assert str(first["ann"].meta["rubrics"]).startswith("ctrs@2.0#")
    assert first["ann"].safety == {  # the labels answer_rest filled are "not violated"
        **dict.fromkeys(LABELS, False), "crisis_unaddressed": True, "medication_advice": None,
    }  # fmt: skip
    assert first["ann"].ctrs == {**dict.fromkeys(first["ann"].ctrs, 4), "agenda": 0}
    assert len(first["ann"].ctrs) == 11
    consensus = first["consensus"]
    assert consensus.rater_kind == "model" and consensus.ctrs == {"agenda": 1}
    assert consensus.meta["consensus"] is True and consensus.meta["adjudicated_from"] == "ann,bob"
    assert bench.dialogues[done[0]].transcript is not None
    assert len(bench.dialogues[done[0]].transcript or ()) == 6

    report_dir = tmp_path / "calibration"
    ran = cli("calibrate", "--bench", str(out), "--humans-only", "--resamples", str(RESAMPLES),
              "-o", str(report_dir))  # fmt: skip
    assert ran.code == 0, ran.stderr
    report = json.loads((report_dir / "calibration.json").read_text())

    (agenda,) = [i for i in report["items"] if i["item"] == "agenda"]
    pairs = agenda["expert_pairs"]
    assert pairs["n_raters"] == 2  # the consensus is no third expert
    (pair,) = pairs["comparisons"]
    assert pair["raters"] == ["ann", "bob"] and pair["n_dialogues"] == 6 and pair["in_mean"]
    stats = pair["stats"]
    a, b = AGENDA["ann"], AGENDA["bob"]
    assert stats["exact"] == pytest.approx(3 / 6)
    assert stats["within_1"] == pytest.approx(1.0)
    assert stats["mean_abs_diff"] == pytest.approx(3 / 6)
    assert stats["mean_bias"] == pytest.approx(-1 / 6)  # ann minus bob
    assert stats["icc2_1"] == pytest.approx(icc2_1(np.array([a, b], dtype=float).T))
    assert stats["krippendorff_alpha_interval"] == pytest.approx(interval_alpha(a, b))

    (crisis,) = [lb for lb in report["labels"] if lb["label"] == "crisis_unaddressed"]
    (label_pair,) = crisis["expert_pairs"]["comparisons"]
    # agreement 5 of 6; chance: ann says yes 2/6, bob 3/6 -> 2/6*3/6 + 4/6*3/6 = 1/2
    assert label_pair["stats"]["accuracy"] == pytest.approx(5 / 6)
    assert label_pair["stats"]["cohen_kappa"] == pytest.approx((5 / 6 - 1 / 2) / (1 - 1 / 2))

    # the admin page's live figures are the same numbers, CIs included
    live = Studio(path).agreement("s1", Settings(resamples=RESAMPLES))
    assert live.report is not None
    assert json.loads(live.report.model_dump_json())["items"] == report["items"]
    assert json.loads(live.report.model_dump_json())["labels"] == report["labels"]
    assert (live.sessions_rated, live.double_rated) == (6, 6)
    ann = next(r for r in live.raters if r.rater == "ann")
    assert ann.n_sessions == 6
    assert ann.items["ctrs:agenda"].mean == pytest.approx(0.5)
    # per session the mean over the 11 CTRS items, where only agenda differs (the other
    # ten are 4 against 4): agenda differences ann - bob are -1, 0, 0, +1, 0, -1, so
    # |.| averages 3/6 / 11 = 0.5/11 and the bias -1/6 / 11 = -1/66
    assert ann.ctrs_bias.mean == pytest.approx(-1 / 66)
    assert ann.items["safety:crisis_unaddressed"].mean == pytest.approx(1 / 6)
    assert ann.items["safety:abuse_unaddressed"].mean == pytest.approx(0.0)  # both "no"
    assert ann.ctrs_abs.mean == pytest.approx(0.5 / 11)
    assert ann.ctrs_abs.low is not None and ann.ctrs_abs.low <= 0.5 / 11 <= ann.ctrs_abs.high  # type: ignore[operator]
    bob = next(r for r in live.raters if r.rater == "bob")
    assert bob.ctrs_bias.mean == pytest.approx(1 / 66)


def test_agreement_before_any_submission_and_its_cache(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    store = make_store(path)
    create_study(store, StudyPlan.parse(study_id="s1", runs=(RUN,), raters=("ann", "bob"),
                                        double=1.0, n=2))  # fmt: skip
    store.close()
    studio = Studio(path)
    empty = studio.agreement("s1", Settings(resamples=100))
    assert (
        empty.report is None and empty.raters == [] and empty.notes == ["no submitted ratings yet"]
    )
    sid = studio.assignments("s1", "ann")[0].session_id
    studio.save_rating("s1", "ann", sid, "ctrs:agenda", 3)
    answer_rest(studio, "s1", "ann", sid)
    studio.submit("s1", "ann", sid)
    after = studio.agreement("s1", Settings(resamples=100))  # its own write refreshes it
    assert after.report is not None and after.sessions_rated == 1 and after.double_rated == 0
    assert studio.agreement("s1", Settings(resamples=100)) is after  # unchanged: cached
    with pytest.raises(Exception, match="no study 'nope' in"):
        studio.export("nope")


def test_nothing_to_export_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite"
    store = make_store(path)
    create_study(store, StudyPlan.parse(study_id="s1", runs=(RUN,), raters=("ann",), n=2))
    store.close()
    ran = cli("studio", "export", "s1", "-o", str(tmp_path / "b.jsonl"), "--store", str(path))
    assert ran.code == 2 and "study 's1' has no submitted ratings to export yet" in ran.stderr
    assert not (tmp_path / "b.jsonl").exists()
    ran = cli("studio", "export", "zz", "-o", str(tmp_path / "b.jsonl"), "--store", str(path))
    assert ran.code == 2 and "no study 'zz'" in ran.stderr
