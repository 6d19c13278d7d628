"""The `therapygym` command: its commands and groups, and `main()`.

Errors a user can fix (`TherapygymError`, and the command-line parser's usage errors)
print one line and exit with status 2. Work that failed for good past `--fail-on-error`
exits 3 and Ctrl-C exits 130, each with a line saying how to rerun (`cli/output.py`).
Each command module imports the library only inside its commands, so `therapygym --help`
loads no model backend, pandas or scipy.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from therapygym import __version__
from therapygym.cli import (
    cache,
    calibrate,
    demo,
    models,
    patients,
    probe,
    report,
    run,
    runs,
    studio,
    train,
    train_judge,
)
from therapygym.cli.output import FAILED_WORK, INTERRUPTED, term
from therapygym.errors import TherapygymError

app = typer.Typer(
    name="therapygym",
    help="Evaluate and align therapy chatbots on CBT fidelity (CTRS) and clinical safety. "
    "A research and evaluation tool, not a clinical device.",
    epilog=f"Exit status: 0 done; 2 bad input or options; {FAILED_WORK} work failed for good "
    f"past --fail-on-error; {INTERRUPTED} interrupted (Ctrl-C). After {FAILED_WORK} or "
    f"{INTERRUPTED}, rerunning the command retries what failed and resumes the rest.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(demo.demo)
app.command()(run.run)
app.command()(run.judge)
app.command("eval")(run.eval_)
app.command()(calibrate.calibrate)
app.command()(probe.probe)
app.command()(probe.scorecard)
app.command()(report.report)
app.command()(report.view)
app.command()(train.train)
app.command("train-judge")(train_judge.train_judge)
app.add_typer(models.app, name="models")
app.add_typer(cache.app, name="cache")
app.add_typer(patients.app, name="patients")
app.add_typer(runs.app, name="runs")
app.add_typer(studio.app, name="studio")


@app.callback(invoke_without_command=True)
def _root(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    if version:
        term.out.print(f"therapygym {__version__}")
        raise typer.Exit()


def _usage_error(e: typer.TyperException) -> str:
    """click's usage error (a bad option value, an unknown option, a missing argument) as
    one line, with where to read more instead of the usage box."""
    text = " ".join(e.format_message().split())
    ctx = getattr(e, "ctx", None)
    return f"{text} (see '{ctx.command_path} --help')" if ctx is not None else text


def main() -> None:
    """Console entry point: run the app, turning user errors (ours, and the usage errors
    of the command-line parser) into one line and exit 2."""
    try:
        code = app(standalone_mode=False)
    except TherapygymError as e:
        term.error(str(e))
        sys.exit(2)
    except typer.TyperException as e:  # typer's click: UsageError, BadParameter, ...
        if type(e).__name__ != "NoArgsIsHelpError":  # that one printed the help already
            term.error(_usage_error(e))
        sys.exit(getattr(e, "exit_code", 2))
    except typer.Abort:
        term.err.print("Aborted!", highlight=False, markup=False)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)  # typer.Exit(n) returns n here
