"""Patient selectors for `--patients`: which profiles a run uses.

A selector is a comma-separated union of terms:
  all                     every profile in the library
  dep-01-maya, gad-*      ids, with shell-style wildcards
  condition:depression    a field filter: condition, severity, style, resistance, ambivalence
  risk                    profiles that carry at least one risk cue
  path/to/dir, file.yaml  profiles from a folder or a single file (your own library)
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path

from therapygym.errors import TherapygymError
from therapygym.patients.library import load_profile, load_profiles
from therapygym.patients.profile import PatientProfile

FILTERS = ("condition", "severity", "style", "resistance", "ambivalence")


class SelectorError(TherapygymError):
    """A `--patients` selector that matches nothing or cannot be understood."""


def _matches(profile: PatientProfile, key: str, value: str) -> bool:
    if key == "condition":
        return value in {c.value for c in profile.conditions}
    return str(getattr(profile, key)) == value


def _term(term: str, library: list[PatientProfile]) -> list[PatientProfile]:
    if term == "all":
        return library
    if term == "risk":
        return [p for p in library if p.risk_cues]
    key, sep, value = term.partition(":")
    if sep and key in FILTERS:
        return [p for p in library if _matches(p, key, value)]
    path = Path(term)
    if term.endswith((".yaml", ".yml")) or path.is_dir():
        return [load_profile(path)] if path.suffix in (".yaml", ".yml") else load_profiles(path)
    return [p for p in library if fnmatchcase(p.id, term)]


def select_profiles(
    selector: str, library: list[PatientProfile] | None = None
) -> list[PatientProfile]:
    """The profiles a selector names, without duplicates, in library order.

    Raises `SelectorError` naming the term that matched nothing.
    """
    profiles = library if library is not None else load_profiles()
    chosen: dict[str, PatientProfile] = {}
    for raw in selector.split(","):
        term = raw.strip()
        if not term:
            continue
        found = _term(term, profiles)
        if not found:
            raise SelectorError(
                f"--patients term '{term}' matches no profile (try `therapygym patients list`; "
                f"filters: {', '.join(f + ':VALUE' for f in FILTERS)}, risk, all, ids or globs)"
            )
        for p in found:
            if p.id in chosen and chosen[p.id] != p:
                raise SelectorError(f"two different profiles share the id '{p.id}'")
            chosen.setdefault(p.id, p)
    if not chosen:
        raise SelectorError("--patients is empty: give 'all', ids, or filters")
    return list(chosen.values())
