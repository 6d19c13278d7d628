"""Probe families by name: what `therapygym probe FAMILY` runs, and the contract each keeps.

A family is an object with a `name`, a one-line `description` and `prepare(options)`.
`prepare` does every check that needs neither a model call nor the store (the options,
the stimuli or battery file, every model spec) and returns a `Probe`; `Probe.run` runs the
family's sessions (resumably, in the run store), judges or parses the replies and returns
a `ProbeOutcome`: what ran, what was judged, the report, and the tables that show it. So
the CLI (and a Python caller) runs any family without knowing which it is:

    outcome = await run_probe("escalation", ProbeOptions(therapists=("openai:m",), judges=(...)))

A new family is a module with a `ProbeFamily` plus one registration line below (by
`"module:attribute"`, imported when the family is asked for); a third-party package
declares an entry point in the group `therapygym.probes` instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console, RenderableType

from therapygym.artefacts import write_text
from therapygym.config import check_cache, check_output, response_cache
from therapygym.errors import TherapygymError
from therapygym.models import ResponseCache
from therapygym.registry import Registry
from therapygym.runner import JudgeResult, RunResult
from therapygym.store import RunStore, check_store_path


class ProbeOptions(BaseModel):
    """Everything `therapygym probe` can be told; each family reads the options it uses
    (and says so in `--help`), defaults as the command's."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    therapists: tuple[str, ...]
    judges: tuple[str, ...] = ()
    version: str | None = None  # a kept version of the family's shipped data (`escalation@1.0`)
    samples: int = 1
    run_id: str | None = None
    probe_file: Path | None = None  # stimuli, a stigma design or a scorecard battery
    persons: int = 20  # stigma: a seeded sample of persons (0 = every person)
    moore: Path | None = None  # stigma: the Moore et al. stimuli folder
    inject_after: int | None = None  # check-question probes: slip in after k turns
    patients: str = "severity:routine"  # hosts for inject_after
    rubrics: tuple[str, ...] = ()  # judge: pinned rubric versions (safety@1.0)
    max_fooled: float | None = Field(None, ge=0, le=1)  # judge: the line (default: the file's)
    patient_model: str = "local:smollm2"
    therapist_prompt: str | None = None
    temperature: float = 0.7
    max_tokens: int = 256
    rationale_chars: int = 240
    concurrency: int = 8
    judge_concurrency: int | None = None
    output: Path | None = None  # the report JSON
    store: Path | None = None
    models_file: Path | None = None
    cache: Path | None = None
    no_cache: bool = False


@dataclass
class ProbeOutcome:
    """What a probe did, for whoever shows it: the run and judging counts (None where the
    family reports them otherwise), the family's tables in order, notes to print after
    them, and its report as the JSON written with `-o`."""

    ran: RunResult | None
    judged: JudgeResult | None
    views: list[RenderableType]
    report_json: str
    notes: list[str] = field(default_factory=list)


class Probe(Protocol):
    """A family's probe, checked and ready: nothing has been opened or called yet."""

    async def run(
        self, store: RunStore, *, cache: ResponseCache | None, console: Console | None
    ) -> ProbeOutcome:
        """Run (resuming what `store` holds), judge and report."""
        ...


class ProbeFamily(Protocol):
    """One kind of probe (`inappropriate`, `stigma`, ...). A family whose shipped data keeps
    earlier versions (the check-question families, stigma) reads `options.version` and
    says so with a `versioned = True` attribute; the others are refused a version."""

    name: str
    description: str  # one line, for help and listings

    def prepare(self, options: ProbeOptions) -> Probe:
        """Check the options, load the stimuli and check every model spec, or raise a
        `TherapygymError` naming the option or file; writes nothing."""
        ...


PROBE_FAMILIES: Registry[ProbeFamily] = Registry("probe family", group="therapygym.probes")
PROBE_FAMILIES.register("inappropriate", "therapygym.probes.checked:INAPPROPRIATE")
PROBE_FAMILIES.register("escalation", "therapygym.probes.checked:ESCALATION")
PROBE_FAMILIES.register("hallucination", "therapygym.probes.checked:HALLUCINATION")
PROBE_FAMILIES.register("stigma", "therapygym.probes.stigma_family:STIGMA")
PROBE_FAMILIES.register("consistency", "therapygym.probes.axes:CONSISTENCY")
PROBE_FAMILIES.register("demographics", "therapygym.probes.axes:DEMOGRAPHICS")
PROBE_FAMILIES.register("judge", "therapygym.probes.judge_battery:JUDGE_BATTERY")


def parse_family_ref(ref: str) -> tuple[str, str | None]:
    """`escalation` -> ("escalation", None); `escalation@1.0` -> ("escalation", "1.0")."""
    name, sep, version = ref.partition("@")
    if sep and not version:
        raise TherapygymError(f"probe family '{ref}': a version follows '@', e.g. escalation@1.0")
    return name, version if sep else None


def probe_family(name: str) -> ProbeFamily:
    """The family `name`, or a one-line error listing every family there is."""
    if name not in PROBE_FAMILIES:
        *rest, last = PROBE_FAMILIES.names()
        known = f"{', '.join(rest)} or {last}" if rest else last
        raise TherapygymError(f"probe family '{name}': expected one of {known}")
    return PROBE_FAMILIES.get(name)


async def run_probe(
    name: str, options: ProbeOptions, *, console: Console | None = None
) -> ProbeOutcome:
    """Check everything, then run, judge and report the family `name` (`family@version`
    runs a kept version of its shipped data); the report JSON goes to `options.output`
    when given. The store and the cache are opened only after every check has passed, so
    a mistake leaves nothing behind."""
    name, version = parse_family_ref(name)
    family = probe_family(name)
    if version is not None:
        if not getattr(family, "versioned", False):
            raise TherapygymError(
                f"probe family '{name}' keeps no earlier versions: drop '@{version}'"
            )
        if options.probe_file is not None:
            raise TherapygymError(
                f"probe {name}@{version}: give a version or --probe-file, not both"
            )
        options = options.model_copy(update={"version": version})
    check_output(options.output, option="--output")
    check_store_path(options.store)
    if not options.no_cache:
        check_cache(options.cache)
    probe = family.prepare(options)
    outcome = await probe.run(
        RunStore(options.store),
        cache=response_cache(options.cache, options.no_cache),
        console=console,
    )
    if options.output is not None:
        write_text(options.output, outcome.report_json)
    return outcome
