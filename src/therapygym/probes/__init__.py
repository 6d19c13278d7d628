"""Probes: the stress tests that sessions with cooperative patients never reach, and the
five-axis scorecard built from them."""
