"""Statistics shared by judges, calibration, probes and reports: one confidence-interval
type, one bootstrap, the paired tests, and the one "mean [low, high]" formatter."""

from __future__ import annotations

from typing import Any


def format_ci(estimate: Any, fmt: str = "{:.1f}") -> str:
    """`mean [low, high]`; the mean alone when there is no interval (a single value), and
    an em dash when there is no mean."""
    if estimate.mean is None:
        return "—"
    if estimate.low is None:
        return fmt.format(estimate.mean)
    return f"{fmt.format(estimate.mean)} [{fmt.format(estimate.low)}, {fmt.format(estimate.high)}]"
