"""`Studio`: blind sessions, rating writes (one row per key, refused writes leave nothing),
state changes, adjudication only after both submit, and concurrent writers."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from study_store import ALPHA, BETA, RUN, answer_rest, make_store

from therapygym.studio.ratings import NotAssigned, RatingError, Studio
from therapygym.studio.study import StudyPlan, create_study


@pytest.fixture
def studio(tmp_path: Path) -> Studio:
    """Study s1: ann and bob, 8 sessions, every one rated by both."""
    store = make_store(tmp_path / "store.sqlite")
    plan = StudyPlan.parse(study_id="s1", runs=(RUN,), raters=("ann", "bob"), double=1.0, n=8)
    create_study(store, plan)
    store.close()
    return Studio(tmp_path / "store.sqlite")


def first(studio: Studio, rater: str = "ann") -> str:
    return studio.assignments("s1", rater)[0].session_id


def count(studio: Studio) -> int:
    with studio.store.reading() as db:
        return int(db.execute("SELECT COUNT(*) FROM study_ratings").fetchone()[0])


def test_the_blind_session_names_no_therapist_model_run_or_profile(studio: Studio) -> None:
    session = studio.session_for("s1", "ann", first(studio))
    text = session.model_dump_json()
    for secret in (ALPHA, BETA, RUN, "model-omega", "llm-patient", "dep-01", "gad-0", "ado-01"):
        assert secret not in text
    assert [t.index for t in session.turns] == list(range(6))
    assert [r.ref for r in session.rubrics] == ["ctrs@2.0", "safety@2.0"]
    agenda = session.rubrics[0].items[0]
    assert agenda.key == "ctrs:agenda" and sorted(agenda.anchors) == [0, 2, 4, 6]
    assert agenda.scale == (0, 6) and not agenda.allows_na and agenda.scope_note
    crisis = next(i for i in session.rubrics[1].items if i.id == "crisis_unaddressed")
    assert crisis.allows_na and crisis.positive_examples and crisis.negative_examples


def test_one_row_per_key_however_often_it_is_saved(studio: Studio) -> None:
    sid = first(studio)
    turns = [t.id for t in studio.session_for("s1", "ann", sid).turns]
    studio.save_rating("s1", "ann", sid, "ctrs:agenda", 2, [turns[3], turns[1]], "first")
    saved = studio.save_rating("s1", "ann", sid, "ctrs:agenda", 5, [turns[1]], "  second ")
    assert count(studio) == 1
    got = studio.ratings("s1", "ann", sid)["ctrs:agenda"]
    assert got == saved and (got.value, got.evidence, got.note) == (5, [turns[1]], "second")
    assert got.rubric_ref.startswith("ctrs@2.0#") and len(got.rubric_ref) == len("ctrs@2.0#") + 12
    studio.save_rating("s1", "ann", sid, "safety:crisis_unaddressed", None, na=True)
    studio.save_rating("s1", "ann", sid, "ctrs:pacing", None, note="unsure")  # a note only
    assert count(studio) == 3
    view = studio.assignments("s1", "ann")[0]
    assert (view.rated, view.items) == (2, 11 + 18)  # the note-only item is not rated


@pytest.mark.parametrize(
    ("item", "value", "evidence", "na", "message"),
    [
        ("ctrs:nope", 3, [], False, "unknown item 'ctrs:nope' for study 's1'"),
        ("mi:open_question", 3, [], False, "unknown item"),
        ("ctrs:agenda", 7, [], False, "7 is off the scale; expected 0 to 6"),
        ("ctrs:agenda", -1, [], False, "off the scale"),
        ("ctrs:agenda", True, [], False, "is not a whole number"),
        ("ctrs:agenda", 2.5, [], False, "is not a whole number"),
        ("ctrs:agenda", "3", [], False, "is not a whole number"),
        ("safety:crisis_unaddressed", 2, [], False, "expected 1 (violated) or 0 (not violated)"),
        ("ctrs:agenda", None, [], True, "not applicable is for safety labels"),
        ("safety:crisis_unaddressed", 1, [], True, "not applicable takes no value"),
        ("ctrs:agenda", 3, ["elsewhere:1"], False, "evidence turn 'elsewhere:1' is not a turn"),
        ("ctrs:agenda", 3, "turn", False, "evidence must be a list of turn ids"),
    ],
)
def test_bad_ratings_are_refused_and_nothing_is_written(
    studio: Studio, item: str, value: object, evidence: object, na: bool, message: str
) -> None:
    sid = first(studio)
    studio.save_rating("s1", "ann", sid, "ctrs:agenda", 4, note="kept")
    with pytest.raises(RatingError) as err:
        studio.save_rating("s1", "ann", sid, item, value, evidence, "changed", na=na)  # type: ignore[arg-type]
    assert message in str(err.value)
    assert count(studio) == 1
    assert studio.ratings("s1", "ann", sid)["ctrs:agenda"].note == "kept"


def test_another_sessions_turn_is_no_evidence(studio: Studio) -> None:
    mine, other = (a.session_id for a in studio.assignments("s1", "ann")[:2])
    foreign = studio.session_for("s1", "ann", other).turns[0].id
    with pytest.raises(RatingError, match=f"is not a turn of session {mine}"):
        studio.save_rating("s1", "ann", mine, "ctrs:agenda", 3, [foreign])
    with pytest.raises(RatingError, match="note has 4001 characters"):
        studio.save_rating("s1", "ann", mine, "ctrs:agenda", 3, note="x" * 4001)
    assert count(studio) == 0


def test_a_session_not_assigned_is_refused(tmp_path: Path) -> None:
    store = make_store(tmp_path / "store.sqlite")
    create_study(store, StudyPlan.parse(study_id="s1", runs=(RUN,), raters=("ann", "bob"), n=6))
    store.close()
    studio = Studio(tmp_path / "store.sqlite")
    bobs = first(studio, "bob")
    assert bobs not in {a.session_id for a in studio.assignments("s1", "ann")}
    studio.save_rating("s1", "bob", bobs, "ctrs:agenda", 6)
    for call in (
        lambda: studio.save_rating("s1", "ann", bobs, "ctrs:agenda", 1),
        lambda: studio.session_for("s1", "ann", bobs),
        lambda: studio.ratings("s1", "ann", bobs),
        lambda: studio.submit("s1", "ann", bobs),
        lambda: studio.flag("s1", "ann", bobs, True),
        lambda: studio.save_rating("s1", "ann", "forged-id", "ctrs:agenda", 1),
        lambda: studio.save_rating("s1", "consensus", bobs, "ctrs:agenda", 1),
    ):
        with pytest.raises(NotAssigned, match="is not assigned to"):
            call()
    assert count(studio) == 1 and studio.ratings("s1", "bob", bobs)["ctrs:agenda"].value == 6
    studio.revoke("s1", "bob")
    with pytest.raises(NotAssigned, match="'bob' of study 's1' was revoked"):
        studio.save_rating("s1", "bob", bobs, "ctrs:agenda", 2)
    with pytest.raises(NotAssigned, match="was revoked"):
        studio.ratings("s1", "bob", bobs)


def test_states_submitted_is_final_skipped_can_reopen(studio: Studio) -> None:
    sid = first(studio)
    studio.save_rating("s1", "ann", sid, "ctrs:agenda", 3)
    studio.flag("s1", "ann", sid, True)
    studio.skip("s1", "ann", sid)
    with pytest.raises(RatingError, match="is skipped; ratings of an open session only"):
        studio.save_rating("s1", "ann", sid, "ctrs:agenda", 4)
    studio.reopen("s1", "ann", sid)
    studio.save_rating("s1", "ann", sid, "ctrs:agenda", 4)
    answer_rest(studio, "s1", "ann", sid)  # a submission answers every item
    studio.submit("s1", "ann", sid)
    view = studio.assignments("s1", "ann")[0]
    assert (view.state, view.flagged, view.submitted_at is not None) == ("submitted", True, True)
    with pytest.raises(RatingError, match="a submitted rating is final"):
        studio.save_rating("s1", "ann", sid, "ctrs:agenda", 5)
    with pytest.raises(RatingError, match="is submitted; only an open one can be submitted"):
        studio.submit("s1", "ann", sid)
    with pytest.raises(RatingError, match="only an skipped one"):
        studio.reopen("s1", "ann", sid)
    studio.flag("s1", "ann", sid, False)  # flags change in any state
    assert studio.ratings("s1", "ann", sid)["ctrs:agenda"].value == 4
    assert count(studio) == view.items  # one row per item
    progress = {p.rater: (p.done, p.assigned, p.flagged) for p in studio.progress("s1")}
    assert progress == {"ann": (1, 8, 0), "bob": (0, 8, 0)}


def test_adjudication_only_after_both_submit(studio: Studio) -> None:
    sid = first(studio)
    for rater, agenda, pacing, crisis, medication in (
        ("ann", 2, 3, 1, None),
        ("bob", 4, 4, 0, None),
    ):
        studio.save_rating("s1", rater, sid, "ctrs:agenda", agenda)
        studio.save_rating("s1", rater, sid, "ctrs:pacing", pacing)
        studio.save_rating("s1", rater, sid, "safety:crisis_unaddressed", crisis)
        studio.save_rating("s1", rater, sid, "safety:medication_advice", medication, na=True)
    # homework 0 against 1: |a - b| < 2, so it is not marked as differing
    studio.save_rating("s1", "ann", sid, "ctrs:homework", 0)
    studio.save_rating("s1", "bob", sid, "ctrs:homework", 1)
    for rater in ("ann", "bob"):  # every other item the same, so it does not differ
        answer_rest(studio, "s1", rater, sid)
    assert studio.adjudication("s1", sid) is None
    studio.submit("s1", "ann", sid)
    assert studio.adjudication("s1", sid) is None  # one of two is not enough
    with pytest.raises(RatingError, match="both raters must submit"):
        studio.save_consensus("s1", sid, "ctrs:agenda", 3)
    studio.submit("s1", "bob", sid)
    view = studio.adjudication("s1", sid)
    assert view is not None and view.raters == ("ann", "bob")
    differs = {i.key for i in view.items if i.differs}
    assert differs == {"ctrs:agenda", "safety:crisis_unaddressed"}  # 2 vs 4; 1 vs 0
    agenda = next(i for i in view.items if i.key == "ctrs:agenda")
    assert {r: v.value for r, v in agenda.values.items() if v} == {"ann": 2, "bob": 4}
    homework = next(i for i in view.items if i.key == "ctrs:homework")
    assert {r: v.value for r, v in homework.values.items() if v} == {"ann": 0, "bob": 1}
    summary = next(a for a in studio.adjudications("s1") if a.session_id == sid)
    assert (summary.ready, summary.differing, summary.consensus_items) == (True, 2, 0)
    assert sum(a.ready for a in studio.adjudications("s1")) == 1

    studio.save_consensus("s1", sid, "ctrs:agenda", 3, note="agreed after discussion")
    studio.save_consensus("s1", sid, "ctrs:agenda", 3)
    with pytest.raises(RatingError, match="off the scale"):
        studio.save_consensus("s1", sid, "ctrs:agenda", 9)
    view = studio.adjudication("s1", sid)
    assert view is not None
    consensus = next(i for i in view.items if i.key == "ctrs:agenda").consensus
    assert consensus is not None and consensus.value == 3
    single = StudyPlan.parse(study_id="s2", runs=(RUN,), raters=("ann", "bob"), n=2)
    create_study(studio.store, single)
    lone = studio.assignments("s2", "ann")[0].session_id
    with pytest.raises(Exception, match="is not double-rated"):
        studio.adjudication("s2", lone)


def test_concurrent_writers_lose_and_duplicate_nothing(studio: Studio) -> None:
    """Eight threads, each a rater's tab, write the same keys over and over: one row per
    key survives, holding one of the values written."""
    sessions = {r: [a.session_id for a in studio.assignments("s1", r)] for r in ("ann", "bob")}
    items = [f"ctrs:{i}" for i in ("agenda", "feedback", "pacing", "homework")]
    errors: list[BaseException] = []

    def tab(rater: str, offset: int) -> None:
        try:
            for round_ in range(5):
                for sid in sessions[rater]:
                    for item in items:
                        studio.save_rating("s1", rater, sid, item, (round_ + offset) % 7)
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=tab, args=(r, k)) for r in ("ann", "bob") for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert count(studio) == 2 * 8 * len(items)
    assert studio.store.integrity_check() == "ok"
