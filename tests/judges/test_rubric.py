"""The shipped rubrics, their fingerprints, and loading errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from therapygym.errors import ConfigError
from therapygym.judges.plan import JudgePlan
from therapygym.judges.rubric import (
    SafetyRubric,
    SafetyRubric2,
    builtin_rubric,
    builtin_versions,
    load_rubric,
    rubric_by_ref,
)

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
NEW_IN_2 = {
    "sycophantic_validation",
    "boundary_violation",
    "false_confidentiality",
    "third_party_unsafeguarded",
    "medical_red_flag_missed",
    "over_escalation",
}
# safety@1.0's fingerprint when it was the current rubric: every score stored under it
# names this, so the kept file must never change
SAFETY_1_0_FINGERPRINT = "92f966cf2f483b094cc3f98fece65c7bdfeba597da9e1de90da5402f793c7e2c"


def test_ctrs_has_the_eleven_items_with_anchors() -> None:
    ctrs = builtin_rubric("ctrs")
    assert [i.id for i in ctrs.items] == [
        "agenda", "feedback", "understanding", "interpersonal_effectiveness", "collaboration",
        "pacing", "guided_discovery", "focus_on_key_cognitions", "strategy_for_change",
        "application_of_techniques", "homework",
    ]  # fmt: skip
    for item in ctrs.items:
        assert sorted(item.anchors) == [0, 2, 4, 6] and item.text_session_guidance


def test_safety_1_0_labels_and_cue_dependence() -> None:
    safety = builtin_rubric("safety", "1.0")
    assert type(safety) is SafetyRubric and safety.ref == "safety@1.0"
    assert safety.fingerprint == SAFETY_1_0_FINGERPRINT
    ids = {label.id for label in safety.labels}
    assert ids == CORE | EXTENDED
    by_id = {label.id: label for label in safety.labels}
    assert {label.id for label in safety.labels if label.group == "core"} == CORE
    assert by_id["crisis_unaddressed"].requires_cues and by_id["abuse_unaddressed"].requires_cues
    assert not by_id["medication_advice"].requires_cues
    assert all(label.positive_examples and label.negative_examples for label in safety.labels)


def test_safety_2_0_is_current_and_keeps_every_1_0_label() -> None:
    safety = builtin_rubric("safety")
    assert isinstance(safety, SafetyRubric2) and safety.ref == "safety@2.0"
    assert safety.fingerprint != SAFETY_1_0_FINGERPRINT
    assert {label.id for label in safety.labels} == CORE | EXTENDED | NEW_IN_2
    assert list(safety.severity_levels) == ["low", "moderate", "high", "critical"]
    for label in safety.labels:  # definition, examples both ways, cues described, a severity
        assert label.definition and label.positive_examples and label.negative_examples
        assert set(label.requires_cues) <= set(safety.cue_kinds)
        assert label.severity.default in label.severity.choices
    by_id = {label.id: label for label in safety.labels}
    assert {c.value for c in by_id["third_party_unsafeguarded"].requires_cues} == {
        "third_party_risk"
    }
    assert {c.value for c in by_id["over_escalation"].requires_cues} >= {"harm_obsession"}
    assert by_id["crisis_unaddressed"].checklist is not None
    assert [i.id for i in by_id["crisis_unaddressed"].checklist.items] == [
        "asked_directly", "explored_risk", "means_safety", "safety_plan", "crisis_resources",
        "stayed_engaged",
    ]  # fmt: skip
    pairs = {p.labels for p in safety.one_event_one_label}
    assert ("derailing_crisis_resources", "task_abandonment") in pairs


def test_rubric_refs_name_versions() -> None:
    assert builtin_versions("safety") == ["1.0", "2.0"]
    assert rubric_by_ref("safety") is builtin_rubric("safety")
    assert rubric_by_ref("safety@2.0") is builtin_rubric("safety")
    assert rubric_by_ref(" safety@1.0 ").fingerprint == SAFETY_1_0_FINGERPRINT
    assert builtin_versions("ctrs") == ["1.0", "2.0"]  # ctrs_examples.yaml is no version
    assert rubric_by_ref("ctrs@1.0") is builtin_rubric("ctrs", "1.0")
    assert (
        rubric_by_ref("ctrs") is builtin_rubric("ctrs") and builtin_rubric("ctrs").version == "2.0"
    )
    with pytest.raises(ConfigError, match=r"'safety@9.9': no such version.*safety@1.0, safety@2.0"):
        rubric_by_ref("safety@9.9")
    with pytest.raises(ValueError, match="expected one of ctrs, safety"):
        rubric_by_ref("vibes@1.0")
    with pytest.raises(ValueError, match=r"must look like 1.0"):
        rubric_by_ref("safety@")


def test_judge_plan_takes_refs_one_version_per_kind() -> None:
    plan = JudgePlan(judges=("x",), rubrics=("ctrs", "safety@1.0"))
    assert plan.refs == [("ctrs", None), ("safety", "1.0")]
    with pytest.raises(ValueError, match="no such version"):
        JudgePlan(judges=("x",), rubrics=("safety@3",))
    with pytest.raises(ValueError, match="safety is listed more than once"):
        JudgePlan(judges=("x",), rubrics=("safety@1.0", "safety@2.0"))
    with pytest.raises(ValueError, match="a version or a rubric file, not both"):
        JudgePlan(judges=("x",), rubrics=("safety@1.0",), rubric_files={"safety": "my.yaml"})


def test_safety_2_0_load_errors_name_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "safety.yaml"
    data = builtin_rubric("safety").model_dump(mode="json")
    data["format"] = 3
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"safety.yaml: field 'format' must be 2"):
        load_rubric(path)
    data["format"] = 2
    data["labels"][1]["checklist"]["items"][1]["skip_when"] = ["maybe"]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"field 'labels.1.checklist'.*skip_when \['maybe'\]"):
        load_rubric(path)
    data = builtin_rubric("safety").model_dump(mode="json")
    data["labels"][0]["severity"]["default"] = "critical"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"labels.0.severity.*must be one of the choices"):
        load_rubric(path)
    data = builtin_rubric("safety").model_dump(mode="json")
    data["labels"][-1]["requires_cues"] = ["hallucination"]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"labels.17.requires_cues.0"):
        load_rubric(path)


def test_response_dimensions() -> None:
    response = builtin_rubric("response")
    assert [d.id for d in response.dimensions] == [
        "guidance", "informativeness", "relevance", "safety", "empathy", "helpfulness",
        "understanding",
    ]  # fmt: skip


def test_fingerprint_follows_the_text(tmp_path: Path) -> None:
    ctrs = builtin_rubric("ctrs")
    data = ctrs.model_dump(mode="json")
    same = type(ctrs).model_validate(data)
    assert same.fingerprint == ctrs.fingerprint
    data["items"][0]["anchors"]["6"] += " (edited)"
    edited = type(ctrs).model_validate(data)
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
