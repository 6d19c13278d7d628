"""Judges: CTRS fidelity, multi-label safety, response quality; panels; aggregates."""
