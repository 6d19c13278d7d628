"""Test utilities shared by the integration tests and benchmark scripts (not needed at runtime)."""
