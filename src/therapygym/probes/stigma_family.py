"""The stigma probe as a family of `therapygym probe`: the shipped design (or the user's,
`--probe-file`) or the Moore et al. stimuli (`--moore`), put to each therapist, answers
parsed and indexed per condition (probes/stigma.py), and shown as tables."""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from therapygym.config import check_specs, validated
from therapygym.errors import TherapygymError
from therapygym.models import ResponseCache
from therapygym.probes.registry import ProbeOptions, ProbeOutcome
from therapygym.probes.stigma import StigmaPlan, StigmaReport, stigma_probe
from therapygym.probes.stigma_moore import MooreStigma, load_moore_stigma
from therapygym.probes.stigma_spec import (
    StigmaBattery,
    builtin_stigma_design,
    expand_design,
    load_stigma_design,
)
from therapygym.stats import format_ci
from therapygym.store import RunStore

MAX_ANSWER_TOKENS = 128  # an answer is one letter; more only lets a reply ramble


def stigma_table(report: StigmaReport) -> Table:
    """Stigma index per therapist and condition, its difference from the control, and how
    many replies could not be read as an answer."""
    table = Table(
        title=f"Stigma ({report.stigma_set}, {report.persons} persons): index 0-1 with 95% CIs; "
        f"control = {report.control}"
    )
    for col in ("therapist", "condition", "index", "vs control", "at stigmatising end",
                "parsed", "don't know", "missing", "failed"):  # fmt: skip
        table.add_column(col, justify="left" if col in ("therapist", "condition") else "right")
    for therapist in report.therapists:
        rows = [r for r in report.index if r.therapist == therapist and r.group == "all"]
        for i, r in enumerate(rows):
            table.add_row(
                therapist if i == 0 else "",
                r.condition,
                format_ci(r.index, "{:.2f}"),
                format_ci(r.index_vs_control, "{:.2f}"),
                format_ci(r.share, "{:.0%}"),
                str(r.counts.parsed),
                str(r.counts.dont_know),
                str(r.counts.missing),
                str(r.counts.failed),
                end_section=i == len(rows) - 1,
            )
    return table


def human_table(report: StigmaReport) -> Table:
    """The published human survey beside the therapist (Moore et al. stimuli only)."""
    table = Table(title="Share at the stigmatising end: therapist vs human survey (2018)")
    for col in ("therapist", "condition", "question", "human %", "therapist %", "difference"):
        table.add_column(col, justify="right" if "%" in col or col == "difference" else "left")
    for r in report.human:
        llm = r.llm_percent
        table.add_row(
            r.therapist,
            r.condition,
            r.question,
            "—" if r.human_percent is None else f"{r.human_percent:.0f}",
            "—" if llm.mean is None else f"{llm.mean:.0f}",
            "—" if r.difference is None else f"{r.difference:+.0f}",
        )
    return table


@dataclass(frozen=True)
class StigmaProbe:
    """A stigma battery and plan, checked and ready to run."""

    plan: StigmaPlan
    battery: StigmaBattery
    moore: MooreStigma | None
    options: ProbeOptions

    async def run(
        self, store: RunStore, *, cache: ResponseCache | None, console: Console | None
    ) -> ProbeOutcome:
        ran, report = await stigma_probe(
            self.plan,
            self.battery,
            store,
            moore=self.moore,
            cache=cache,
            models_file=self.options.models_file,
            concurrency=self.options.concurrency,
            console=console,
        )
        views = [stigma_table(report), *([human_table(report)] if report.human else [])]
        return ProbeOutcome(ran=ran, judged=None, views=views, report_json=report.to_json())


@dataclass(frozen=True)
class StigmaFamily:
    """Vignettes x questions with lettered answers; no judge (answers are parsed)."""

    name: str
    description: str
    versioned = True  # `stigma@1`: a kept version of the shipped design

    def prepare(self, options: ProbeOptions) -> StigmaProbe:
        if options.moore and options.version:
            raise TherapygymError(
                f"probe stigma@{options.version}: a version picks the shipped design; "
                "--moore runs the published stimuli instead"
            )
        moore = load_moore_stigma(options.moore) if options.moore else None
        if moore is not None:
            battery = moore.battery()
        else:
            path = options.probe_file
            design = load_stigma_design(path) if path else builtin_stigma_design(options.version)
            battery = expand_design(design)
        default_run = "probe-stigma-moore" if moore else "probe-stigma"
        plan = validated(
            lambda: StigmaPlan(
                run_id=options.run_id or default_run,
                therapists=options.therapists,
                therapist_prompt=options.therapist_prompt,
                samples=options.samples,
                temperature=options.temperature,
                max_tokens=min(options.max_tokens, MAX_ANSWER_TOKENS),
                persons=options.persons or None,
            ),
            "probe",
        )
        check_specs(
            options.models_file, therapists=options.therapists, prompt=options.therapist_prompt
        )
        return StigmaProbe(plan, battery, moore, options)


STIGMA = StigmaFamily("stigma", "stigma towards conditions, against a no-disorder control")
