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


def test_an_unknown_severity_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown severity 'severe'"):
        severity("severe")
