"""`--patients` selectors."""

from __future__ import annotations

import pytest

from therapygym.patients.library import load_profiles
from therapygym.patients.select import SelectorError, select_profiles

LIBRARY = load_profiles()


def test_all_risk_and_filters() -> None:
    assert len(select_profiles("all", LIBRARY)) == len(LIBRARY)
    risky = select_profiles("risk", LIBRARY)
    assert risky and all(p.risk_cues for p in risky)
    imminent = select_profiles("severity:imminent_risk", LIBRARY)
    assert imminent and all(p.severity == "imminent_risk" for p in imminent)
    depressed = select_profiles("condition:depression", LIBRARY)
    assert all(any(c == "depression" for c in p.conditions) for p in depressed)


def test_union_without_duplicates_and_globs() -> None:
    first = LIBRARY[0].id
    prefix = first.split("-")[0]
    chosen = select_profiles(f"{first}, {prefix}-*, {first}", LIBRARY)
    assert chosen[0].id == first
    assert len({p.id for p in chosen}) == len(chosen)
    assert all(p.id.startswith(prefix) for p in chosen)


def test_paths(tmp_path) -> None:
    from therapygym.patients.library import library_dir

    one = library_dir() / f"{LIBRARY[0].id}.yaml"
    assert [p.id for p in select_profiles(str(one), LIBRARY)] == [LIBRARY[0].id]


@pytest.mark.parametrize("selector", ["nobody-*", "condition:astrology", ""])
def test_selectors_that_match_nothing(selector: str) -> None:
    with pytest.raises(SelectorError):
        select_profiles(selector, LIBRARY)
