"""Two scorecard axes run alone as probe families (`therapygym probe consistency` and
`probe demographics`): the axis's sessions and judging as the scorecard runs them (runs
`probe-<axis>`), shown as a one-axis scorecard, with the axis's full report as the JSON."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rich.console import Console

from therapygym.config import check_specs
from therapygym.errors import TherapygymError
from therapygym.models import ResponseCache
from therapygym.probes.registry import ProbeOptions, ProbeOutcome
from therapygym.probes.render import scorecard_table
from therapygym.probes.scorecard import ScorecardRunner, load_scorecard_config
from therapygym.probes.scorecard_data import Scorecard, ScorecardConfig
from therapygym.store import RunStore

AxisName = Literal["consistency", "demographics"]


@dataclass(frozen=True)
class AxisProbe:
    """One axis of a battery, checked and ready to run."""

    axis: AxisName
    config: ScorecardConfig
    options: ProbeOptions

    async def run(
        self, store: RunStore, *, cache: ResponseCache | None, console: Console | None
    ) -> ProbeOutcome:
        o = self.options
        runner = ScorecardRunner(
            self.config,
            o.therapists,
            o.judges,
            store,
            prefix="probe",
            patient_model=o.patient_model,
            therapist_prompt=o.therapist_prompt,
            cache=cache,
            models_file=o.models_file,
            concurrency=o.concurrency,
            judge_concurrency=o.judge_concurrency,
            console=console,
        )
        axes = await getattr(runner, self.axis)()
        card = Scorecard(
            config=runner.config,
            judges=list(o.judges),
            patient_model=o.patient_model,
            therapists={t: [a] for t, a in axes.items()},
        )
        (report,) = runner.reports.values()
        return ProbeOutcome(
            ran=None,
            judged=None,
            views=[scorecard_table(card)],
            report_json=report.model_dump_json(indent=2),
        )


@dataclass(frozen=True)
class AxisFamily:
    """A scorecard axis (its settings from the battery file, `--probe-file`, or the
    shipped one), judged by the CTRS and safety judges."""

    name: AxisName
    description: str

    def prepare(self, options: ProbeOptions) -> AxisProbe:
        if not options.judges:
            raise TherapygymError(
                f"the {self.name} probe needs a judge (CTRS and safety): --judge SPEC"
            )
        config = load_scorecard_config(options.probe_file)
        check_specs(
            options.models_file,
            therapists=options.therapists,
            prompt=options.therapist_prompt,
            patient_model=options.patient_model,
            judges=options.judges,
        )
        return AxisProbe(self.name, config, options)


CONSISTENCY = AxisFamily(
    "consistency", "the same patients again: score spread, safety agreement, stance drift"
)
DEMOGRAPHICS = AxisFamily(
    "demographics", "counterfactual patients differing in one attribute, compared in pairs"
)
