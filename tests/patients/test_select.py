"""`--patients` selectors."""

from __future__ import annotations

from pathlib import Path

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


DEPRESSED = select_profiles("condition:depression", LIBRARY)
IMMINENT = select_profiles("severity:imminent_risk", LIBRARY)


def test_comma_is_or_and_plus_is_and() -> None:
    either = select_profiles("condition:depression,severity:imminent_risk", LIBRARY)
    both = select_profiles("condition:depression+severity:imminent_risk", LIBRARY)
    assert {p.id for p in either} == {p.id for p in DEPRESSED} | {p.id for p in IMMINENT}
    assert [p.id for p in both] == [p.id for p in DEPRESSED if p in IMMINENT]
    assert 0 < len(both) < len(DEPRESSED) < len(either)  # (today: 4, 15 and 17 of 44)


def test_plus_binds_tighter_than_comma_and_mixes_every_kind_of_term() -> None:
    chosen = select_profiles(" dep-* + risk , gad-01-priya ", LIBRARY)
    risky_depressed = [p.id for p in LIBRARY if p.id.startswith("dep-") and p.risk_cues]
    assert [p.id for p in chosen] == [*risky_depressed, "gad-01-priya"]


def _my_library(folder: Path) -> Path:
    from therapygym.patients.library import library_dir

    folder.mkdir()
    (folder / "dep-01-maya.yaml").write_text((library_dir() / "dep-01-maya.yaml").read_text())
    return folder


def test_a_path_with_a_plus_in_its_name_is_a_path(tmp_path: Path) -> None:
    folder = _my_library(tmp_path / "mine+theirs")
    assert [p.id for p in select_profiles(str(folder), LIBRARY)] == ["dep-01-maya"]


def test_a_path_and_a_filter(tmp_path: Path) -> None:
    folder = _my_library(tmp_path / "mine")
    severity = LIBRARY[[p.id for p in LIBRARY].index("dep-01-maya")].severity
    assert [p.id for p in select_profiles(f"{folder}+severity:{severity}", LIBRARY)] == [
        "dep-01-maya"
    ]
    other = next(p.severity for p in LIBRARY if p.severity != severity)
    with pytest.raises(SelectorError, match="but no profile matches all of them"):
        select_profiles(f"{folder}+severity:{other}", LIBRARY)


@pytest.mark.parametrize(
    ("selector", "fragment"),
    [
        ("conditon:depression", "unknown filter 'conditon' (expected one of condition, severity"),
        ("severity:awful", "severity values in the library: crisis_adjacent, distress,"),
        ("condition:depression+", "empty term beside '+'"),
        ("+risk", "empty term beside '+'"),
        ("risk+nobody-*", "--patients term 'nobody-*' matches no profile"),
        (
            "condition:grief+condition:ocd",
            "--patients 'condition:grief+condition:ocd' matches no profile: each term matches "
            f"some (condition:grief {len(select_profiles('condition:grief', LIBRARY))}, "
            f"condition:ocd {len(select_profiles('condition:ocd', LIBRARY))})",
        ),
        (" , ", "--patients is empty"),
    ],
)
def test_selector_errors_say_what_is_wrong(selector: str, fragment: str) -> None:
    with pytest.raises(SelectorError) as info:
        select_profiles(selector, LIBRARY)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_the_readme_counts_what_its_selectors_select() -> None:
    """The README's selector table (it once called a union of 17 profiles the 4 of both)."""
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")
    table = readme.split("| selector | selects")[1].split("\n\n")[0]
    rows = [line.split("|") for line in table.splitlines() if line.startswith("| `")]
    assert len(rows) == 3
    for _, selector, selects, _ in rows:
        count = int(selects.rsplit(":", 1)[1])
        assert len(select_profiles(selector.strip(" `"), LIBRARY)) == count, selector
