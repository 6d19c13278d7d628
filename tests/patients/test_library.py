"""The shipped profile library, and the loader's errors for broken profile files."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml

from therapygym.patients.library import ProfileError, library_dir, load_profile, load_profiles
from therapygym.patients.profile import Condition, RiskCueKind, Severity, Style
from therapygym.records import SessionConfig

LIBRARY = load_profiles()


def test_library_size_and_risk_cues() -> None:
    assert len(LIBRARY) >= 40
    assert sum(bool(p.risk_cues) for p in LIBRARY) >= 10
    assert len({p.id for p in LIBRARY}) == len(LIBRARY)


def test_library_spread() -> None:
    conditions = Counter(c for p in LIBRARY for c in p.conditions)
    assert set(Condition) <= set(conditions), set(Condition) - set(conditions)
    assert set(Counter(p.severity for p in LIBRARY)) == set(Severity)
    styles = Counter(p.style for p in LIBRARY)
    assert all(styles[s] >= 3 for s in Style), styles
    cue_kinds = Counter(c.kind for p in LIBRARY for c in p.risk_cues)
    assert set(cue_kinds) == set(RiskCueKind), set(RiskCueKind) - set(cue_kinds)
    ages = [p.demographics.age for p in LIBRARY]
    assert min(ages) < 20 and max(ages) > 65
    assert len({p.demographics.gender for p in LIBRARY}) >= 3
    assert len({p.demographics.culture for p in LIBRARY}) >= 30
    assert {p.resistance for p in LIBRARY} == {"low", "medium", "high"}
    assert {p.ambivalence for p in LIBRARY} == {"low", "medium", "high"}


def test_every_profile_has_a_locale() -> None:
    """Locale is required, so this holds by the schema; the spread keeps the crisis-line
    lookup exercised across countries, not one default."""
    assert all(p.locale for p in LIBRARY)
    assert len({p.locale for p in LIBRARY}) >= 15


def _patient_turns(config: SessionConfig) -> int:
    """How many turns the patient gets in a session run with `config`."""
    opens = config.opener == "patient"
    return (config.max_turns + opens) // 2


def test_cues_surface_within_a_default_session() -> None:
    """A cue whose window ends after the patient's last turn may never be voiced in a
    default session, and then the case is played without its risk."""
    last = _patient_turns(SessionConfig())
    late = {
        p.id: [list(c.window) for c in p.risk_cues if c.window[1] > last]
        for p in LIBRARY
        if any(c.window[1] > last for c in p.risk_cues)
    }
    assert not late, f"cue windows ending after patient turn {last}: {late}"


def test_every_cue_has_a_window() -> None:
    """A fixed turn is learnable: a policy trained on the library would learn when risk
    comes up instead of listening for it."""
    fixed = [p.id for p in LIBRARY for c in p.risk_cues if c.window[0] == c.window[1]]
    assert not fixed


def test_cue_timing_is_spread() -> None:
    """Windows differ across the library in where they start, where they end and how wide
    they are, so no one turn is where risk surfaces."""
    windows = [c.window for p in LIBRARY for c in p.risk_cues]
    assert len({w[0] for w in windows}) >= 3
    assert len({w[1] for w in windows}) >= 3
    assert len({w[1] - w[0] for w in windows}) >= 3


def _family(kind: RiskCueKind) -> str:
    """Suicidal ideation, with or without a plan or means, is one thread disclosed by
    degrees; every other kind is its own."""
    return "suicidal" if kind.value.startswith("suicidal_ideation") else kind.value


def test_a_hint_comes_before_its_disclosure() -> None:
    """A hint (explicit: false) followed by an explicit cue of the same thread must end
    before that cue's window starts, so no draw voices the disclosure first or both at once."""
    wrong = [
        (p.id, hint.kind.value, later.kind.value)
        for p in LIBRARY
        for i, hint in enumerate(p.risk_cues)
        if not hint.explicit
        for later in p.risk_cues[i + 1 :]
        if later.explicit
        and _family(later.kind) == _family(hint.kind)
        and later.window[0] <= hint.window[1]
    ]
    assert not wrong


def _write(tmp_path: Path, name: str, data: object) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return path


def _valid() -> dict:
    # an authored profile that carries harm_to_others (one of the cases below needs it)
    return yaml.safe_load((library_dir() / "ang-01-daniela.yaml").read_text())


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda d: d["demographics"].update(age="forty"), "field 'demographics.age'"),
        (lambda d: d.pop("history"), "field 'history' is missing"),
        (lambda d: d.update(favourite_colour="blue"), "unknown field 'favourite_colour'"),
        (lambda d: d.update(severity="severe"), "field 'severity': Input should be 'routine'"),
        (lambda d: d.update(style="chatty"), "field 'style'"),
        (
            lambda d: d["core_beliefs"][0].update(category="anxious"),
            "field 'core_beliefs.0.category'",
        ),
        (
            lambda d: d.update(severity="imminent_risk", risk_cues=[]),
            "imminent_risk needs a risk cue",
        ),
        (lambda d: d.update(id="Bad Id"), "field 'id'"),
        (lambda d: d.pop("locale"), "field 'locale' is missing"),
        (lambda d: d.update(locale="UK"), "this country is 'GB'"),
        (lambda d: d.update(locale="gb"), "field 'locale': Value error, expected an ISO 3166-1"),
        (lambda d: d.update(locale="GBR"), "field 'locale'"),
        (lambda d: d.update(locale=False), 'write Norway\'s code in quotes ("NO")'),
        (
            lambda d: d.update(severity="distress"),  # the profile carries harm_to_others
            "severity distress is too low for a risk cue of kind harm_to_others",
        ),
    ],
)
def test_schema_errors_name_file_and_field(tmp_path: Path, mutate, fragment: str) -> None:
    data = _valid()
    mutate(data)
    path = _write(tmp_path, data["id"] if data["id"] == _valid()["id"] else "bad", data)
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    assert str(path) in str(err.value)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("", "file is empty"),
        ("id: x\n  bad: indent: here\n", "invalid YAML at line 2"),
        ("- just\n- a list\n", "expected a mapping"),
    ],
)
def test_unreadable_files(tmp_path: Path, content: str, fragment: str) -> None:
    with pytest.raises(ProfileError, match=fragment):
        load_profile(_write(tmp_path, "x", content))


def test_binary_junk_and_missing_file(tmp_path: Path) -> None:
    junk = tmp_path / "junk.yaml"
    junk.write_bytes(b"\xff\xfe\x00\x81binary")
    with pytest.raises(ProfileError, match="not UTF-8"):
        load_profile(junk)
    with pytest.raises(ProfileError, match="file not found"):
        load_profile(tmp_path / "absent.yaml")


def test_id_must_match_file_name(tmp_path: Path) -> None:
    path = _write(tmp_path, "other-name", _valid())
    with pytest.raises(ProfileError, match="but the file is named 'other-name'"):
        load_profile(path)
