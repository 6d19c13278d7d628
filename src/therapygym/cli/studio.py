"""`studio create|serve|status|revoke|export`: clinicians rate stored sessions, blind, in
the browser, and their ratings become a bench for `calibrate` (docs/studio.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from therapygym.cli.options import StoreOpt
from therapygym.cli.output import term

app = typer.Typer(help="The rating studio: clinicians rate sessions blind; export a bench.")

DEFAULT_PORT = 8766
HostOpt = Annotated[
    str,
    typer.Option(
        help="Address the studio listens on; anything but loopback serves plain HTTP to the "
        "network (put a TLS reverse proxy in front instead)."
    ),
]
PortOpt = Annotated[int, typer.Option(min=1, max=65535, help="Port of the studio.")]
StudyArg = Annotated[str, typer.Argument(help="Study id.")]


def _listed(values: list[str]) -> tuple[str, ...]:
    """Comma-separated and repeated values alike: `--run a,b` is `--run a --run b`."""
    return tuple(v.strip() for value in values for v in value.split(",") if v.strip())


@app.command("create")
def create(
    study_id: StudyArg,
    run: Annotated[list[str], typer.Option("--run", help="Run to sample from (repeatable).")],
    raters: Annotated[str, typer.Option(help="Rater names, comma-separated (a,b,c).")],
    rubric: Annotated[
        str, typer.Option(help="What raters score: ctrs, safety or both, optionally @version.")
    ] = "ctrs,safety",
    double: Annotated[
        float, typer.Option(help="Fraction of sessions rated by two raters (the ceiling).")
    ] = 0.0,
    seed: Annotated[int, typer.Option(help="Seed of the sample, the pairs and the orders.")] = 0,
    n: Annotated[
        int | None, typer.Option("--n", help="Sessions to sample (default: every finished one).")
    ] = None,
    practice: Annotated[
        Path | None,
        typer.Option(help="Bench JSONL whose expert-rated dialogues are a practice round."),
    ] = None,
    practice_n: Annotated[int, typer.Option(help="Practice sessions to take from it.")] = 3,
    host: HostOpt = "127.0.0.1",
    port: PortOpt = DEFAULT_PORT,
    store: StoreOpt = None,
) -> None:
    """Sample sessions of runs for raters to rate, and print each rater's login link.

    Sessions are sampled stratified by therapist and patient severity and assigned to the
    raters, a --double fraction to two of them, each rater in an order of their own.

    The links hold the tokens, printed this once and stored only hashed: send each rater
    their own link; `studio revoke` withdraws one."""
    from therapygym.store import RunStore, check_store_path, default_store_path
    from therapygym.studio.study import StudyError, StudyPlan, create_study, login_link

    plan = StudyPlan.parse(
        study_id=study_id,
        runs=_listed(run),
        rubrics=_listed([rubric]),
        raters=_listed([raters]),
        double=double,
        seed=seed,
        n=n,
        practice=practice,
        practice_n=practice_n,
    )
    check_store_path(store)
    path = store if store is not None else default_store_path()
    if not path.is_file():  # a study samples stored runs: a new, empty store has none
        raise StudyError(f"no store at {path}: run something first, or pass --store PATH")
    created = create_study(RunStore(path), plan)
    strata = ", ".join(f"{k}: {v}" for k, v in created.strata.items())
    term.out.print(
        f"study {created.study_id}: {created.sessions} sessions ({strata}), "
        f"{created.double} rated twice, {created.practice} practice",
        highlight=False,
        markup=False,
    )
    term.out.print(
        "Login links (the tokens are shown only now and stored hashed; send each rater their own):",
        highlight=False,
        markup=False,
    )
    for rater, token in created.tokens.items():
        term.out.print(
            f"  {rater}: {login_link(host, port, created.study_id, token)}",
            highlight=False,
            markup=False,
            soft_wrap=True,
        )
    term.out.print(
        f"  admin: {login_link(host, port, created.study_id, created.admin_token)}",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )
    serve = f"therapygym studio serve --host {host} --port {port}"
    term.out.print(f"Then: {serve}" + (f" --store {store}" if store else ""), highlight=False)


@app.command("serve")
def serve(
    host: HostOpt = "127.0.0.1", port: PortOpt = DEFAULT_PORT, store: StoreOpt = None
) -> None:
    """Serve the store's studies to their raters in the browser (Ctrl-C stops it)."""
    from therapygym.store import default_store_path
    from therapygym.studio.server import serve_studio

    serve_studio(store if store is not None else default_store_path(), host, port, term.out)


@app.command("status")
def status(study_id: StudyArg, store: StoreOpt = None) -> None:
    """Each rater's progress: sessions done (submitted or skipped) of those assigned."""
    from therapygym.store import default_store_path
    from therapygym.studio.ratings import Studio

    studio = Studio(store if store is not None else default_store_path())
    info = studio.study(study_id)
    term.out.print(
        f"study {study_id}: {info.n_sessions} sessions, {info.n_double} rated twice, "
        f"rubrics {', '.join(info.rubrics)}",
        highlight=False,
        markup=False,
    )
    for p in studio.progress(study_id):
        extra = (f", {p.flagged} flagged" if p.flagged else "") + (
            " (revoked)" if p.revoked else ""
        )
        term.out.print(f"  {p.rater}: {p.done}/{p.assigned} done{extra}", highlight=False)
    ready = [a for a in studio.adjudications(study_id) if a.ready]
    term.out.print(f"  double-rated sessions ready to adjudicate: {len(ready)}", highlight=False)


@app.command("revoke")
def revoke(
    study_id: StudyArg,
    rater: Annotated[str, typer.Argument(help="Rater (or admin) whose token stops working.")],
    store: StoreOpt = None,
) -> None:
    """Withdraw a rater's login token at once; their ratings stay in the study."""
    from therapygym.store import default_store_path
    from therapygym.studio.ratings import Studio

    Studio(store if store is not None else default_store_path()).revoke(study_id, rater)
    term.out.print(f"revoked {rater}'s access to study {study_id}", highlight=False)


@app.command("export")
def export(
    study_id: StudyArg,
    output: Annotated[Path, typer.Option("-o", "--output", help="Bench JSONL file to write.")],
    store: StoreOpt = None,
) -> None:
    """Write the submitted ratings as a bench file for `calibrate --bench FILE`.

    The file is therapygym.bench/1; the adjudicated consensus is in it as rater
    `consensus`, a non-human rater, so it never raises the human-human ceiling."""
    from therapygym.calibration.bench import build_bench, write_bench_jsonl
    from therapygym.config import check_output
    from therapygym.store import default_store_path
    from therapygym.studio.ratings import Studio

    check_output(output, option="--output")
    ratings = Studio(store if store is not None else default_store_path()).export(study_id)
    write_bench_jsonl(build_bench(f"study {study_id}", ratings), output)
    humans = sum(r.rater_kind == "human" for r in ratings)
    term.out.print(
        f"wrote {humans} ratings and {len(ratings) - humans} consensus ratings of "
        f"{len({r.dialogue_id for r in ratings})} sessions to {output}",
        highlight=False,
    )
