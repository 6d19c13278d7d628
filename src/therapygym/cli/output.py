"""The terminal every command prints to (results on stdout, failures on stderr), and how
the commands that save work as they go (`run`, `judge`, `eval`, `probe`, `calibrate`) end
when it did not all go well: one way for all of them, so a script reads them alike.

Exit statuses: 0 done; 2 bad input (`app.main`); `FAILED_WORK` when work failed for good
past `--fail-on-error`; `INTERRUPTED` on Ctrl-C. Both of the last two print how to rerun,
which retries the failed work and resumes the rest.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import typer

from therapygym.failure import FailurePolicy, Tally
from therapygym.report.terminal import Terminal

FAILED_WORK = 3  # not 1, which an unexpected crash gives, nor 2 (bad input)
INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C

term = Terminal()


def wrote(paths: Iterable[Path]) -> None:
    """The files a command wrote (`calibrate`, `scorecard`), on one line."""
    term.out.print("wrote " + ", ".join(str(p) for p in paths))


def rerun(new_run_id: str | None = None) -> str:
    """How to pick up where a command left off. `new_run_id` is a run the command named
    itself (no `--run-id` was given): the same command again would start another one."""
    if new_run_id is None:
        return "rerun the same command"
    return f"rerun the same command with --run-id {new_run_id}"


@contextmanager
def resumable(how: str) -> Iterator[None]:
    """Turn Ctrl-C inside into a line saying how to resume (`how`, from `rerun`) and exit
    status 130; without it typer exits 130 without a word. The runner has said by then how
    much of each batch the store holds."""
    try:
        yield
    except KeyboardInterrupt:
        term.err.print(
            f"interrupted: {how} to resume; what is saved is kept", markup=False, highlight=False
        )
        raise typer.Exit(INTERRUPTED) from None


def enforce(policy: FailurePolicy, found: Iterable[Tally], how: str) -> None:
    """Exit with `FAILED_WORK` when the work that failed for good breaks `policy`, saying
    how much failed of how much and how to retry it (`how`, from `rerun`)."""
    verdict = policy.verdict(found)
    if verdict is not None:
        term.error(f"{verdict} (--fail-on-error {policy}); {how} to retry them")
        raise typer.Exit(FAILED_WORK)
