"""When failed work fails the whole job: the failure policy of `run`, `judge`, `eval`,
`probe` and `calibrate` (their `--fail-on-error`), in one place.

A session or judgement unit that fails for good (its retries spent, or its answer never
valid) is stored with its cause and retried by the next resume, so the runner carries on
past it. Whether the job as a whole then counts as failed is this policy's call, with
Inspect AI's meaning of `fail_on_error`: any failure (the default), never, a count
(N or more failed units), or a fraction (at least that share of the units failed). Each
kind of work (sessions, judgement units) is held to the limit on its own, as Inspect holds
each task: their totals differ, and a failed session leaves no unit to judge.

Only counts come in, through `Tally`, so a Python caller can hold any result to the same
policy the CLI applies.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol


class SessionCounts(Protocol):
    """What a batch of sessions did (`runner.RunResult`), as far as failures go."""

    planned: int
    failed: int


class UnitCounts(Protocol):
    """What a judging pass did (`runner.JudgeResult`), as far as failures go."""

    units: int
    failed: int


@dataclass(frozen=True)
class Tally:
    """`failed` of `total` units of one kind of work (`what`: "sessions", ...) failed for
    good. `total` counts the units already done before a resume too: a resumed job is
    judged on the state it leaves, as if it had run in one go."""

    what: str
    failed: int
    total: int

    def __str__(self) -> str:
        return f"{self.failed} of {self.total} {self.what} failed"


def tallies(ran: SessionCounts | None = None, judged: UnitCounts | None = None) -> list[Tally]:
    """The tallies of a job that ran sessions and/or judged them (either may be None)."""
    found = []
    if ran is not None:
        found.append(Tally("sessions", ran.failed, ran.planned))
    if judged is not None:
        found.append(Tally("judgement units", judged.failed, judged.units))
    return found


@dataclass(frozen=True)
class FailurePolicy:
    """How much failed work fails the job. `limit` is Inspect's `fail_on_error`: True, any
    failed unit; False, none ever; a float in (0, 1), at least that fraction of the units;
    an int N >= 1, N or more units."""

    limit: bool | float | int = True

    @classmethod
    def parse(cls, text: str) -> FailurePolicy:
        """`any`, `never`, a count (`5`) or a fraction (`0.1`); raises ValueError with what
        to give instead."""
        word = text.strip().lower()
        if word in ("any", "never"):
            return cls(word == "any")
        try:
            value = float(word)
        except ValueError:
            value = float("nan")
        if 0 < value < 1:
            return cls(value)
        if value >= 1 and value.is_integer():
            return cls(int(value))
        raise ValueError(
            f"'{text}': give any, never, a count of failed units (1 or more) or a fraction "
            "of them (between 0 and 1)"
        )

    def __str__(self) -> str:
        if isinstance(self.limit, bool):
            return "any" if self.limit else "never"
        return str(self.limit)

    def breached_by(self, tally: Tally) -> bool:
        """Whether `tally` alone fails the job under this policy."""
        if tally.failed == 0 or self.limit is False:
            return False
        if self.limit is True:
            return True
        if self.limit < 1:
            return tally.failed >= self.limit * tally.total
        return tally.failed >= self.limit

    def verdict(self, found: Iterable[Tally]) -> str | None:
        """None when the job passes; else what failed, every kind of work with a failure
        named ("3 of 40 sessions failed and 2 of 114 judgement units failed")."""
        found = list(found)
        if not any(self.breached_by(t) for t in found):
            return None
        return " and ".join(str(t) for t in found if t.failed)


# Inspect's default, and ours: a job with any unit failed for good has failed.
ANY_FAILURE = FailurePolicy()
