"""The stigma probe as a family of `therapygym probe`: the shipped design (or the user's,
`--probe-file`) or the Moore et al. stimuli (`--moore`), put to each therapist, answers
parsed and indexed per condition (probes/stigma.py)."""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console

from therapygym.config import check_specs, validated
from therapygym.models import ResponseCache
from therapygym.probes.registry import ProbeOptions, ProbeOutcome
from therapygym.probes.stigma import StigmaPlan, stigma_probe
from therapygym.probes.stigma_moore import MooreStigma, load_moore_stigma
from therapygym.probes.stigma_spec import (
    StigmaBattery,
    builtin_stigma_design,
    expand_design,
    load_stigma_design,
)
from therapygym.store import RunStore

MAX_ANSWER_TOKENS = 128  # an answer is one letter; more only lets a reply ramble


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
        from therapygym.probes.render import human_table, stigma_table

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

    def prepare(self, options: ProbeOptions) -> StigmaProbe:
        moore = load_moore_stigma(options.moore) if options.moore else None
        if moore is not None:
            battery = moore.battery()
        else:
            path = options.probe_file
            battery = expand_design(load_stigma_design(path) if path else builtin_stigma_design())
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
