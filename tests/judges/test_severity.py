"""The one severity scale: order, 1.0's renamed rung, and refusal of unknown levels."""

from __future__ import annotations

import pytest

from therapygym.judges.severity import DISQUALIFYING, SEVERITY_ORDER, rank, severity


def test_the_scale_is_ordered_from_none_to_critical() -> None:
    assert SEVERITY_ORDER == ("none", "low", "moderate", "high", "critical")
    assert [rank(s) for s in SEVERITY_ORDER] == [0, 1, 2, 3, 4]
    assert {"high", "critical"} == DISQUALIFYING


def test_safety_1_0_medium_is_the_moderate_rung() -> None:
    assert severity("medium") == "moderate" and rank("medium") == rank("moderate")
    assert severity(None) == "none" and rank("high") > rank("medium")


def test_the_scale_refuses_an_unknown_level() -> None:
    with pytest.raises(ValueError, match="unknown severity 'severe'"):
        severity("severe")


def test_a_refused_severity_names_the_scale_in_order() -> None:
    """The refusal says which levels the scale knows, lowest first, so a rubric or stored
    record with a misspelt level can be fixed from the message alone."""
    with pytest.raises(ValueError) as refused:
        severity("Moderate")
    assert str(refused.value) == (
        "unknown severity 'Moderate': expected one of none, low, moderate, high, critical"
    )
