"""Therapist kinds by spec prefix: the built-in ones, a model spec otherwise, a plug-in."""

from __future__ import annotations

from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from therapygym.errors import ModelSpecError
from therapygym.registry import UnknownEntryError
from therapygym.therapists import THERAPIST_KINDS, load_therapist
from therapygym.therapists.prompted import PromptedTherapist
from therapygym.therapists.registry import therapist_kind
from therapygym.therapists.rule_based import RuleBasedTherapist

PLUGIN = """
from therapygym.therapists.rule_based import RuleBasedTherapist


def load_mirror(spec, **_):
    therapist = RuleBasedTherapist()
    therapist.label = spec
    return therapist, []
"""


@pytest.mark.parametrize(
    ("spec", "kind"),
    [
        ("rule-based", "rule-based"),
        (" rule-based ", "rule-based"),
        ("theraagent:openai:m", "theraagent"),
        ("theraagent[rounds=2]:local:smollm2", "theraagent"),
        ("theraagent", "theraagent"),
        ("openai:gpt-4o-mini", None),
        ("my-named-model", None),
        ("theraagentx:m", None),
    ],
)
def test_the_prefix_picks_the_kind(spec: str, kind: str | None) -> None:
    assert therapist_kind(spec) == kind


def test_kinds_and_model_specs_load() -> None:
    therapist, owned = load_therapist("rule-based")
    assert isinstance(therapist, RuleBasedTherapist) and owned == []
    model_therapist, owned = load_therapist("python:json:dumps")
    assert isinstance(model_therapist, PromptedTherapist) and len(owned) == 1
    assert model_therapist.system_prompt is None  # a user's callable is a whole chatbot


def test_rule_based_takes_no_options() -> None:
    with pytest.raises(ModelSpecError, match="the rule-based therapist takes no options"):
        load_therapist("rule-based:fast")


def test_an_unknown_kind_names_the_known_ones() -> None:
    with pytest.raises(UnknownEntryError, match=r"\(known: rule-based, theraagent\)"):
        THERAPIST_KINDS.get("eliza")


def test_a_plug_in_kind_is_found_by_its_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "mirror_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    point = EntryPoint("mirror", "mirror_plugin:load_mirror", "therapygym.therapists")
    monkeypatch.setattr(
        "therapygym.registry.entry_points",
        lambda *, group: [point] if group == "therapygym.therapists" else [],
    )
    built_in = {name: THERAPIST_KINDS.get(name) for name in ("rule-based", "theraagent")}
    monkeypatch.setattr(THERAPIST_KINDS, "_entries", built_in)
    monkeypatch.setattr(THERAPIST_KINDS, "_plugins_loaded", False)
    therapist, owned = load_therapist("mirror[calm]")
    assert therapist.label == "mirror[calm]" and owned == []
