"""Patient selectors for `--patients`: which profiles a run uses.

A selector is a union (`,` = or) of intersections (`+` = and) of terms:
  all                     every profile in the library
  dep-01-maya, gad-*      ids, with shell-style wildcards
  condition:depression    a field filter: condition, severity, style, resistance, ambivalence
  risk                    profiles that carry at least one risk cue
  path/to/dir, file.yaml  profiles from a folder or a single file (your own library)

  condition:depression,severity:imminent_risk   depressed OR at imminent risk
  condition:depression+severity:imminent_risk   depressed AND at imminent risk
  dep-*+risk, gad-01-priya                      (dep-* AND risk) OR gad-01-priya

`,` keeps the meaning it always had (a union), so existing selectors select what they did;
`+` binds tighter, as "and" does. A part naming an existing folder or a .yaml file is read
as a path whole, so a path with a `+` in it still works.
"""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path

from therapygym.errors import TherapygymError
from therapygym.patients.library import load_profile, load_profiles
from therapygym.patients.profile import PatientProfile

FILTERS = ("condition", "severity", "style", "resistance", "ambivalence")
GRAMMAR = "',' = or, '+' = and"
TERMS = f"filters {', '.join(f + ':VALUE' for f in FILTERS)}, risk, all, ids, globs or paths"


class SelectorError(TherapygymError):
    """A `--patients` selector that matches nothing or cannot be understood."""


def _values(profile: PatientProfile, key: str) -> set[str]:
    """The values a profile has for filter `key` (a profile has several conditions)."""
    if key == "condition":
        return {c.value for c in profile.conditions}
    return {str(getattr(profile, key))}


def _is_path(term: str) -> bool:
    return term.endswith((".yaml", ".yml")) or Path(term).is_dir()


def _term(term: str, pool: list[PatientProfile]) -> list[PatientProfile]:
    """The profiles of `pool` that `term` names (a path names its own profiles)."""
    if term == "all":
        return pool
    if term == "risk":
        return [p for p in pool if p.risk_cues]
    if _is_path(term):
        path = Path(term)
        return [load_profile(path)] if path.suffix in (".yaml", ".yml") else load_profiles(path)
    key, sep, value = term.partition(":")
    if sep:
        if key not in FILTERS:
            raise SelectorError(
                f"--patients term '{term}': unknown filter '{key}' (expected one of "
                f"{', '.join(FILTERS)}, as in condition:depression)"
            )
        return [p for p in pool if value in _values(p, key)]
    return [p for p in pool if fnmatchcase(p.id, term)]


def _no_match(term: str, library: list[PatientProfile]) -> SelectorError:
    """The error for a term that matches nothing on its own, with what would match."""
    key, sep, _ = term.partition(":")
    if sep and key in FILTERS:
        known = sorted(set().union(*(_values(p, key) for p in library)))
        hint = f"{key} values in the library: {', '.join(known)}"
    else:
        hint = f"try `therapygym patients list`; {TERMS}"
    return SelectorError(f"--patients term '{term}' matches no profile ({hint})")


def _intersection(part: str, library: list[PatientProfile]) -> list[PatientProfile]:
    """The profiles every `+`-joined term of `part` names, in the first term's order."""
    terms = [part] if _is_path(part) else [t.strip() for t in part.split("+")]
    if not all(terms):
        raise SelectorError(f"--patients '{part}': empty term beside '+' ({GRAMMAR})")
    found = _term(terms[0], library)
    if not found:
        raise _no_match(terms[0], library)
    for term in terms[1:]:
        named = _term(term, found)
        if not named and not _term(term, library):
            raise _no_match(term, library)
        keep = {p.id for p in named}
        found = [p for p in found if p.id in keep]
    if not found:
        counts = ", ".join(f"{t} {len(_term(t, library))}" for t in terms)
        raise SelectorError(
            f"--patients '{part}' matches no profile: each term matches some ({counts}) but "
            f"no profile matches all of them ('+' = and; use ',' for or)"
        )
    return found


def select_profiles(
    selector: str, library: list[PatientProfile] | None = None
) -> list[PatientProfile]:
    """The profiles a selector names, without duplicates, in the order the selector names
    them (library order within a term).

    Raises `SelectorError` naming the term (or the `+` intersection) that matched nothing,
    or the part it cannot understand.
    """
    profiles = library if library is not None else load_profiles()
    chosen: dict[str, PatientProfile] = {}
    for raw in selector.split(","):
        part = raw.strip()
        if not part:
            continue
        for p in _intersection(part, profiles):
            if p.id in chosen and chosen[p.id] != p:
                raise SelectorError(f"two different profiles share the id '{p.id}'")
            chosen.setdefault(p.id, p)
    if not chosen:
        raise SelectorError(f"--patients is empty: give 'all', ids, filters or paths ({GRAMMAR})")
    return list(chosen.values())
