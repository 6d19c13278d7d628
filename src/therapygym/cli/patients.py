"""`patients list|show|validate`: the simulated-patient profiles."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from therapygym.cli.output import term

app = typer.Typer(help="Browse and validate simulated-patient profiles.")


@app.command("list")
def patients_list(
    selector: Annotated[
        str,
        typer.Option(
            "--patients",
            help="Selector, as for `run`: ',' = or, '+' = and (dep-*+risk, condition:grief).",
        ),
    ] = "all",
) -> None:
    """The profiles in the library (or matching a selector)."""
    from therapygym.patients.select import select_profiles

    term.profiles(select_profiles(selector))


@app.command("show")
def patients_show(
    profile_id: Annotated[str, typer.Argument(help="Profile id or YAML path.")],
) -> None:
    """One profile in full, as YAML."""
    from therapygym.patients.select import select_profiles

    (profile,) = select_profiles(profile_id)[:1]
    term.profile(profile)


@app.command("validate")
def patients_validate(
    paths: Annotated[list[Path], typer.Argument(help="Profile YAML files or folders.")],
) -> None:
    """Check profile files; every problem names the file, the field and what was expected."""
    from therapygym.patients.library import check_profile_files

    checked = check_profile_files(paths)
    for path, problem in checked:
        term.checked_file(path, problem)
    if any(problem for _, problem in checked):
        raise typer.Exit(2)
