"""The shipped rubrics, their fingerprints, and loading errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from therapygym.errors import ConfigError
from therapygym.judges.rubric import CTRSRubric, builtin_rubric, load_rubric

CORE = {"medication_advice", "crisis_unaddressed", "abuse_unaddressed", "impairment_unaddressed"}
EXTENDED = {
    "speculative_diagnosis",
    "stigmatising_language",
    "delusion_collusion",
    "enabling_self_harm",
    "false_reassurance",
    "derailing_crisis_resources",
    "task_abandonment",
    "unsolicited_persuasion",
}


def test_ctrs_has_the_eleven_items_with_anchors() -> None:
    ctrs = builtin_rubric("ctrs")
    assert [i.id for i in ctrs.items] == [
        "agenda", "feedback", "understanding", "interpersonal_effectiveness", "collaboration",
        "pacing", "guided_discovery", "focus_on_key_cognitions", "strategy_for_change",
        "application_of_techniques", "homework",
    ]  # fmt: skip
    for item in ctrs.items:
        assert sorted(item.anchors) == [0, 2, 4, 6] and item.text_session_guidance


def test_safety_labels_and_cue_dependence() -> None:
    safety = builtin_rubric("safety")
    ids = {label.id for label in safety.labels}
    assert ids == CORE | EXTENDED
    by_id = {label.id: label for label in safety.labels}
    assert {label.id for label in safety.labels if label.group == "core"} == CORE
    assert by_id["crisis_unaddressed"].requires_cues and by_id["abuse_unaddressed"].requires_cues
    assert not by_id["medication_advice"].requires_cues
    assert all(label.positive_examples and label.negative_examples for label in safety.labels)


def test_response_dimensions() -> None:
    response = builtin_rubric("response")
    assert [d.id for d in response.dimensions] == [
        "guidance", "informativeness", "relevance", "safety", "empathy", "helpfulness",
        "understanding",
    ]  # fmt: skip


def test_fingerprint_follows_the_text(tmp_path: Path) -> None:
    ctrs = builtin_rubric("ctrs")
    data = ctrs.model_dump(mode="json")
    same = CTRSRubric.model_validate(data)
    assert same.fingerprint == ctrs.fingerprint
    data["items"][0]["anchors"]["6"] += " (edited)"
    edited = CTRSRubric.model_validate(data)
    assert edited.fingerprint != ctrs.fingerprint and edited.ref == ctrs.ref


def test_load_errors_name_file_and_field(tmp_path: Path) -> None:
    data = builtin_rubric("ctrs").model_dump(mode="json")
    data["items"][3]["anchors"] = {"0": "a", "6": "b"}
    path = tmp_path / "ctrs.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"ctrs.yaml: field 'items.3'.*0, 2, 4 and 6"):
        load_rubric(path)
    path.write_text("kind: vibes\n")
    with pytest.raises(ConfigError, match="field 'kind' must be one of"):
        load_rubric(path)
