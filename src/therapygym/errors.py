"""User-facing errors.

Every error a user can cause (a bad spec, a missing key, a missing file) is a
`TherapygymError` whose message is one line that says what is wrong and how to fix it.
The CLI prints that line and exits with status 2 instead of showing a traceback.
"""

from __future__ import annotations

from pydantic import ValidationError


class TherapygymError(Exception):
    """An error caused by input or environment that the user can fix; the message says how."""


class ModelSpecError(TherapygymError):
    """A model spec string or YAML model entry that cannot be understood."""


class MissingAPIKeyError(TherapygymError):
    """The environment variable that should hold an API key is not set."""


class ModelNotInstalledError(TherapygymError):
    """A local model file (embedded or GGUF) is not where it should be."""


class ModelCallError(TherapygymError):
    """A model call failed for good: permanent error, or retries exhausted.

    Callers that run many calls (sessions, judges) catch this and record `cause`
    instead of stopping the run.
    """

    def __init__(self, spec: str, cause: str, *, attempts: int, transient: bool) -> None:
        self.spec = spec
        self.cause = cause
        self.attempts = attempts
        self.transient = transient
        tries = f" ({attempts} attempts)" if attempts > 1 else ""
        super().__init__(f"model {spec}: {cause}{tries}")


class ModelUnreachableError(ModelCallError):
    """The server behind a spec never answered: wrong base_url, server down, or blocked."""


class ConfigError(TherapygymError):
    """A configuration file that is missing, unreadable or invalid."""


def describe_validation_error(err: ValidationError, where: str) -> str:
    """A pydantic error as the one line users see: `<where>: field 'a.b': problem; ...`.

    Unknown fields and missing fields are named as such; for a wrong value the offending
    input is shown (shortened), so the user can find it in their file.
    """
    problems = []
    for e in err.errors():
        field = ".".join(str(x) for x in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            problems.append(f"unknown field '{field}'")
        elif e["type"] == "missing":
            problems.append(f"field '{field}' is missing")
        else:
            got = e.get("input")
            shown = repr(got)[:60] if not isinstance(got, dict | list) else type(got).__name__
            problems.append(f"field '{field}': {e['msg']} (got {shown})")
    return f"{where}: " + "; ".join(problems)
