"""docs/patients.md counts the shipped library; this recomputes the counts so the doc
cannot drift from the profiles. On a mismatch the failure prints the table the doc should
hold, ready to paste between its markers."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from therapygym.patients.library import load_profiles
from therapygym.patients.profile import Condition, PatientProfile, Severity

DOC = Path(__file__).parents[2] / "docs" / "patients.md"
START, END = "<!-- counts:start -->", "<!-- counts:end -->"
AGE_BANDS = ((12, 17), (18, 25), (26, 39), (40, 64), (65, 100))


def _band(age: int) -> str:
    low, high = next(b for b in AGE_BANDS if b[0] <= age <= b[1])
    return f"{low}+" if high == 100 else f"{low}-{high}"


def _table(title: str, counts: Counter[str], order: list[str]) -> str:
    rows = [f"| {title} | profiles |", "|---|---|"]
    rows += [f"| {key} | {counts[key]} |" for key in order]
    return "\n".join(rows)


def counts_block(library: list[PatientProfile]) -> str:
    """The doc's counts section for `library`: one table per axis, in a fixed order
    (schema order for conditions and severities, most frequent first otherwise)."""
    conditions = Counter(c.value for p in library for c in p.conditions)
    severities = Counter(p.severity.value for p in library)
    genders = Counter(p.demographics.gender for p in library)
    ages = Counter(_band(p.demographics.age) for p in library)
    locales = Counter(p.locale for p in library)

    def by_count(counts: Counter[str]) -> list[str]:
        return sorted(counts, key=lambda k: (-counts[k], k))

    bands = [_band(low) for low, _ in AGE_BANDS]
    parts = [
        f"{len(library)} profiles, {sum(bool(p.risk_cues) for p in library)} of them with "
        f"risk cues ({sum(len(p.risk_cues) for p in library)} cues). A profile counts once "
        "under each of its conditions.",
        _table("condition", conditions, [c.value for c in Condition]),
        _table("severity", severities, [s.value for s in Severity]),
        _table("gender", genders, by_count(genders)),
        _table("age", ages, bands),
        _table("locale", locales, by_count(locales)),
    ]
    return "\n\n".join(parts)


def test_the_doc_counts_the_library() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert START in text and END in text, f"{DOC} lacks the {START} ... {END} markers"
    held = text.split(START, 1)[1].split(END, 1)[0].strip()
    expected = counts_block(load_profiles())
    assert held == expected, (
        f"{DOC} is out of date; paste this between its markers:\n\n{expected}\n"
    )


def test_age_bands_cover_every_allowed_age() -> None:
    """Demographics allow ages 12 to 100; every one of them falls in exactly one band."""
    for age in range(12, 101):
        assert sum(low <= age <= high for low, high in AGE_BANDS) == 1, age
