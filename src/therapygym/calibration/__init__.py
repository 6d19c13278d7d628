"""Judge calibration: agreement of LLM judges with expert ratings (statistics in `stats`)."""
