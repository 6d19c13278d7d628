"""Crisis lines as data: every shipped entry is sourced and dated, lookup by locale, and a
malformed file names itself and the field at fault."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
import yaml

from therapygym.judges.crisis_lines import (
    CrisisLinesError,
    crisis_lines_path,
    lines_for,
    load_crisis_lines,
)
from therapygym.patients.library import load_profiles

SHIPPED = load_crisis_lines(crisis_lines_path())


def test_every_entry_cites_an_https_page_and_the_day_it_was_read() -> None:
    assert SHIPPED
    for line in SHIPPED:
        assert line.source_url.startswith("https://"), line
        assert isinstance(line.checked, date) and line.checked <= date.today(), line
        assert line.contact and line.hours and line.service, line


def test_lookup_by_locale() -> None:
    (gb,) = lines_for("GB")
    assert (gb.service, gb.contact) == ("Samaritans", "116 123")
    assert lines_for("gb") == lines_for(" GB ") == [gb]
    assert all(line.country == "AU" for line in lines_for("AU")) and lines_for("AU")


@pytest.mark.parametrize("locale", [None, "", "ZZ", "US-CA", "XX"])
def test_unknown_or_missing_locale_has_no_lines(locale: str | None) -> None:
    assert lines_for(locale) == []


def test_library_locales_are_all_valid_lookups() -> None:
    """Every profile's locale is a code the lookup understands; a country without a
    sourced entry simply has none (never another country's line)."""
    for profile in load_profiles():
        assert all(line.country == profile.locale for line in lines_for(profile.locale))


def _entry(**changes: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "country": "GB",
        "service": "Example line",
        "contact": "116 123",
        "hours": "24 hours a day",
        "source_url": "https://example.org/contact",
        "checked": date(2026, 1, 2),
    }
    entry.update(changes)
    return entry


def _write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "lines.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("lines", "fragment"),
    [
        ([_entry(source_url="http://example.org")], "field 'lines.0.source_url'"),
        ([_entry(checked="yesterday")], "field 'lines.0.checked'"),
        ([_entry(checked=date(2999, 1, 1))], "is in the future"),
        ([_entry(country="UK")], "this country is 'GB'"),
        ([_entry(contact=3114)], "field 'lines.0.contact': Input should be a valid string"),
        (
            [{k: v for k, v in _entry().items() if k != "source_url"}],
            "'lines.0.source_url' is missing",
        ),
        ([_entry(), _entry(phone="1")], "unknown field 'lines.1.phone'"),
        ([_entry(), _entry()], "GB 'Example line' is listed twice"),
        ([], "field 'lines'"),
    ],
)
def test_malformed_file_names_file_and_field(
    tmp_path: Path, lines: list[Any], fragment: str
) -> None:
    path = _write(tmp_path, {"lines": lines})
    with pytest.raises(CrisisLinesError) as err:
        load_crisis_lines(path)
    assert str(path) in str(err.value) and fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(CrisisLinesError, match="file not found"):
        load_crisis_lines(tmp_path / "absent.yaml")
    with pytest.raises(CrisisLinesError, match="expected a mapping"):
        load_crisis_lines(_write(tmp_path, "- a\n- list\n"))


def test_the_lines_are_part_of_the_2_0_prompt_fingerprint(monkeypatch: pytest.MonkeyPatch) -> None:
    """safety@2.0 shows the judge its locale's lines: another number is another prompt, so
    stored units judged with the old lines are never served as the new ones. safety@1.0
    shows none, and its fingerprint does not move."""
    from therapygym.judges import crisis_lines
    from therapygym.judges.rubric import builtin_rubric
    from therapygym.judges.safety import SafetyJudge

    def judges() -> tuple[str, str]:
        crisis_lines.crisis_lines_fingerprint.cache_clear()
        two = SafetyJudge(None, builtin_rubric("safety", "2.0"))  # type: ignore[arg-type]
        one = SafetyJudge(None, builtin_rubric("safety", "1.0"))  # type: ignore[arg-type]
        return two.fingerprint, one.fingerprint

    before = judges()
    shipped = crisis_lines._shipped()
    changed = (shipped[0].model_copy(update={"contact": "116 000"}), *shipped[1:])
    monkeypatch.setattr(crisis_lines, "_shipped", lambda: changed)
    after = judges()
    monkeypatch.undo()
    crisis_lines.crisis_lines_fingerprint.cache_clear()
    assert after[0] != before[0] and after[1] == before[1]
