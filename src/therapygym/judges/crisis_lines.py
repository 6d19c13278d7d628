"""Crisis lines by country, as data (`resources/crisis_lines.yaml`).

The safety judge is shown the patient's locale and the lines that serve it, so it can tell a
referral that fits (the right country's service) from one that does not (a US number given
to a patient in Auckland). Numbers are facts: each entry carries the page it was read on
(the service's own, its operator's or a member centre's, else a government health page) and
the date it was read, so it can be checked again and traced; a country without a sourced
entry has no lines, rather than a guessed one.
"""

from __future__ import annotations

from datetime import date
from functools import cache
from importlib import resources
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from therapygym.errors import TherapygymError
from therapygym.patients.profile import CountryCode
from therapygym.records import short_fingerprint
from therapygym.yamlfile import read_yaml_model


class CrisisLinesError(TherapygymError):
    """A crisis-lines file that cannot be read or does not match the schema."""


class _Strict(BaseModel):
    # strict: a number written unquoted in YAML (3114) is refused rather than turned into
    # text, so the file says what the service says, digit grouping included
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, str_strip_whitespace=True)


class CrisisLine(_Strict):
    """One service in one country, with where and when its details were checked."""

    country: CountryCode
    service: str = Field(min_length=2, description="The service's name, as it writes it.")
    contact: str = Field(
        min_length=3, description="A number to call or a text line, as the service writes it."
    )
    hours: str = Field(min_length=3, description="When it answers, as its page states.")
    source_url: str = Field(
        pattern=r"^https://[^\s/]+\.[^\s/]+(/\S*)?$",
        description="The page where contact and hours were read (https): the service's "
        "own, its operator's or a member centre's, else a government health page.",
    )
    checked: date = Field(description="The day the source page was read.")

    @model_validator(mode="after")
    def _checked_in_the_past(self) -> CrisisLine:
        if self.checked > date.today():
            raise ValueError(f"checked {self.checked} is in the future: the day the page was read")
        return self


class CrisisLines(_Strict):
    """The whole file: one list, at most one entry per (country, service)."""

    lines: list[CrisisLine] = Field(min_length=1)

    @model_validator(mode="after")
    def _no_duplicates(self) -> CrisisLines:
        seen: set[tuple[str, str]] = set()
        for line in self.lines:
            key = (line.country, line.service.casefold())
            if key in seen:
                raise ValueError(f"{line.country} '{line.service}' is listed twice")
            seen.add(key)
        return self


def crisis_lines_path() -> Path:
    """The crisis-lines file shipped with therapygym."""
    return Path(str(resources.files("therapygym.judges") / "resources" / "crisis_lines.yaml"))


def load_crisis_lines(path: Path | str) -> list[CrisisLine]:
    """Every line in a crisis-lines file; errors name the file and the field at fault."""
    return read_yaml_model(Path(path), "crisis lines file", CrisisLines, CrisisLinesError).lines


@cache
def _shipped() -> tuple[CrisisLine, ...]:
    return tuple(load_crisis_lines(crisis_lines_path()))


@cache
def crisis_lines_fingerprint() -> str:
    """A short hash of the shipped lines: part of safety@2.0's prompt fingerprint, since the
    judge is shown them, so a changed or added number never passes for the same prompt."""
    data = [line.model_dump(mode="json") for line in _shipped()]
    return short_fingerprint(data)


def lines_for(locale: str | None) -> list[CrisisLine]:
    """The shipped lines for a country (ISO 3166-1 alpha-2, any case), in file order; empty
    for None or a country without a sourced entry, so callers never get a guess."""
    if not locale:
        return []
    code = locale.strip().upper()
    return [line for line in _shipped() if line.country == code]
