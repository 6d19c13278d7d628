"""`Studio.submit` itself refuses an incomplete rating, so a Python caller (not only the web
page) cannot put a half-rated session into the bench: every CTRS item needs a score and
every safety label an answer, "not applicable" counting as one."""

from __future__ import annotations

from pathlib import Path

import pytest
from study_store import RUN, make_store

from therapygym.studio.ratings import (
    IncompleteRating,
    RatingError,
    RatingValue,
    Studio,
    missing_items,
)
from therapygym.studio.study import StudyPlan, create_study


@pytest.fixture
def studio(tmp_path: Path) -> Studio:
    store = make_store(tmp_path / "store.sqlite")
    create_study(store, StudyPlan.parse(study_id="s1", runs=(RUN,), raters=("ann", "bob"), n=4))
    store.close()
    return Studio(tmp_path / "store.sqlite")


def _state(studio: Studio, sid: str) -> str:
    return next(a.state for a in studio.assignments("s1", "ann") if a.session_id == sid)


def test_submit_refuses_until_every_item_is_answered(studio: Studio) -> None:
    sid = studio.assignments("s1", "ann")[0].session_id
    keys = [i.key for r in studio.session_for("s1", "ann", sid).rubrics for i in r.items]
    ctrs = [k for k in keys if k.startswith("ctrs:")]
    safety = [k for k in keys if k.startswith("safety:")]
    assert len(ctrs) == 11 and len(safety) >= 2

    with pytest.raises(IncompleteRating) as nothing:
        studio.submit("s1", "ann", sid)
    assert nothing.value.missing == keys  # all of them, in the rubric's order
    assert str(nothing.value).startswith(f"{len(keys)} item(s) still need an answer")

    for k in ctrs:
        studio.save_rating("s1", "ann", sid, k, 3)
    studio.save_rating("s1", "ann", sid, safety[0], 0)
    studio.save_rating("s1", "ann", sid, safety[1], None, na=True)  # n/a is an answer
    for k in safety[2:-1]:
        studio.save_rating("s1", "ann", sid, k, 1)
    # the last label: a note and evidence, but no verdict, is still no answer
    turn = studio.session_for("s1", "ann", sid).turns[1].id
    studio.save_rating("s1", "ann", sid, safety[-1], None, [turn], "unsure")
    with pytest.raises(IncompleteRating) as one:
        studio.submit("s1", "ann", sid)
    assert one.value.missing == [safety[-1]] and _state(studio, sid) == "open"
    # a cleared score counts as unanswered again
    studio.save_rating("s1", "ann", sid, safety[-1], 0, [turn], "unsure")
    studio.save_rating("s1", "ann", sid, ctrs[4], None)
    with pytest.raises(IncompleteRating, match=f"1 item\\(s\\) .*: {ctrs[4]}$"):
        studio.submit("s1", "ann", sid)

    studio.save_rating("s1", "ann", sid, ctrs[4], 6)
    studio.submit("s1", "ann", sid)
    assert _state(studio, sid) == "submitted"
    # a second submit is refused for its state, not for completeness
    with pytest.raises(RatingError, match="a submitted rating is final") as again:
        studio.submit("s1", "ann", sid)
    assert not isinstance(again.value, IncompleteRating)


def test_skipping_needs_no_answers(studio: Studio) -> None:
    sid = studio.assignments("s1", "ann")[1].session_id
    studio.skip("s1", "ann", sid)
    assert _state(studio, sid) == "skipped"


def test_missing_items_rule() -> None:
    def rv(value: int | None, na: bool = False) -> RatingValue:
        return RatingValue(
            value=value, na=na, evidence=[], note=None, rubric_ref="r", updated_at="t"
        )

    ratings = {"a": rv(0), "b": rv(None, na=True), "c": rv(None), "e": rv(6)}
    assert missing_items(["a", "b", "c", "d", "e"], ratings) == ["c", "d"]
    assert missing_items([], ratings) == []
