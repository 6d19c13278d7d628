"""The judge registry: every path that builds judges goes through JUDGES, and a plug-in
judge kind comes from the `therapygym.judges` entry-point group (issue 15)."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from therapygym.judges.ctrs import CTRSJudge
from therapygym.judges.plan import JudgePlan
from therapygym.judges.registry import JUDGES, build_judges
from therapygym.judges.safety import SafetyJudge
from therapygym.models import load_model
from therapygym.registry import UnknownEntryError

PLUGIN = """
from therapygym.judges.ctrs import CTRSJudge


class StrictCTRSJudge(CTRSJudge):
    '''A user's CTRS judge: what the registry hands out for its kind.'''
"""


def test_build_judges_takes_each_kind_from_the_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A judge kind registered by entry point replaces the class `build_judges` uses for
    that rubric; the other kinds stay the built-in ones."""
    (tmp_path / "strict_judge.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    point = EntryPoint("ctrs", "strict_judge:StrictCTRSJudge", "therapygym.judges")
    monkeypatch.setattr(
        "therapygym.registry.entry_points",
        lambda *, group: [point] if group == "therapygym.judges" else [],
    )
    built_in = {name: JUDGES.get(name) for name in ("safety", "response", "check")}
    monkeypatch.setattr(JUDGES, "_entries", built_in)
    monkeypatch.setattr(JUDGES, "_plugins_loaded", False)
    model = load_model("python:json:dumps")
    ctrs, safety = build_judges(JudgePlan(judges=("x",), rubrics=("ctrs", "safety")), model)
    assert type(ctrs).__name__ == "StrictCTRSJudge" and isinstance(ctrs, CTRSJudge)
    assert type(safety) is SafetyJudge


def test_an_unknown_judge_kind_names_the_known_ones() -> None:
    with pytest.raises(
        UnknownEntryError, match=r"\(known: ctrs, safety, response, check, mi, patient_fidelity\)"
    ):
        JUDGES.get("miti")
