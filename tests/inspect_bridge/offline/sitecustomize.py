"""Imported at start-up by the `inspect eval` subprocess of test_task.py, whose PYTHONPATH
names this folder. Inspect's mock model estimates its token usage with tiktoken's
o200k_base encoding, which tiktoken downloads on first use; the tests run offline, so the
estimate counts words instead. Nothing else changes: the task, the solver, the scorers and
Inspect's eval loop run as a user runs them."""

import inspect_ai.model._model as _model


def _words(text: str) -> int:
    return max(1, len(text.split()))


_model.count_text_tokens = _words
