"""What the command line prints: every table and result line, in one place.

`Terminal` writes results to stdout and failures to stderr. It reads results the library
returns (run, judging and evaluation results, summaries, stored runs, profiles) by the
fields it shows, and never reaches the runner or the models, so any caller with those
objects can print them the same way.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from rich.console import Console
from rich.table import Table
from rich.text import Text

if TYPE_CHECKING:
    from therapygym.judges.aggregate import TherapistSummary
    from therapygym.judges.fidelity_summary import FidelityReport
    from therapygym.patients.profile import PatientProfile
    from therapygym.records import Transcript
    from therapygym.stats import Estimate
    from therapygym.store import RunInfo
    from therapygym.summary import Summary

EMBEDDED_SUMMARY_NOTE = (
    "[yellow]note:[/yellow] scores from the embedded 135M judge carry no clinical "
    "meaning; it is a stand-in for plumbing and demos."
)


class RoleUsage(Protocol):
    calls: int
    cached_calls: int
    errors: int
    retries: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    fallbacks: int
    fallback_notes: list[str]


class Usage(Protocol):
    """Usage by role (`models.UsageLedger`)."""

    roles: Mapping[str, RoleUsage]

    def total(self) -> RoleUsage: ...


class RunOutcome(Protocol):
    """What a batch of sessions did (`runner.RunResult`)."""

    run_id: str
    planned: int
    skipped: int
    completed: int
    failed: int
    errors: list[str]
    usage: Usage


class JudgingOutcome(Protocol):
    """What a judging pass did (`runner.JudgeResult`)."""

    units: int
    skipped: int
    judged: int
    failed: int
    errors: list[str]
    usage: Usage


class CacheStats(Protocol):
    """What the response cache holds (`models.cache.CacheStats`)."""

    path: str
    entries: int
    size_bytes: int
    by_model: Mapping[str, int]


class Evaluation(Protocol):
    """What `runner.evaluate` did (`runner.EvalResult`)."""

    store: Path
    run: RunOutcome | None
    judging: JudgingOutcome | None
    summary: Summary | None
    embedded_judge: bool
    config: Any  # its `output` is where the summary JSON went

    @property
    def usage(self) -> Usage: ...


def _width() -> int | None:
    """Piped or logged output gets a readable width instead of rich's 80-column default."""
    return None if sys.stdout.isatty() or "COLUMNS" in os.environ else 120


class Terminal:
    """Results on stdout, failures and progress on stderr."""

    def __init__(self) -> None:
        width = _width()
        self.out = Console(width=width)
        self.err = Console(stderr=True, width=width)

    def error(self, message: str) -> None:
        """One line a user can act on (no markup: paths and specs print as they are)."""
        self.err.print(f"error: {message}", highlight=False, markup=False, soft_wrap=True)

    def text(self, text: str) -> None:
        """Text as it is (YAML a user may save): no markup, no wrapping."""
        self.out.print(text, end="", markup=False, highlight=False, soft_wrap=True)

    def note(self, text: str) -> None:
        self.out.print(f"[yellow]note:[/yellow] {text}")

    def written(self, what: str, path: Path | str) -> None:
        self.out.print(f"{what} written to {path}", highlight=False)

    # -- runs, judging, evaluations ---------------------------------------------------

    def run_result(self, result: RunOutcome, store: Path) -> None:
        self.out.print(
            f"run [bold]{result.run_id}[/bold]: {result.planned} sessions planned, "
            f"{result.skipped} already done, {result.completed} completed, "
            f"{result.failed} failed -> {store}"
        )
        for line in result.errors[:10]:
            self.err.print(f"  failed {line}", markup=False, highlight=False)

    def judging_result(self, result: JudgingOutcome) -> None:
        self.out.print(
            f"judging: {result.units} units, {result.skipped} already done, "
            f"{result.judged} judged, {result.failed} failed"
        )
        for line in result.errors[:10]:
            self.err.print(f"  judge failure {line[:300]}", markup=False, highlight=False)

    def usage(self, usage: Usage) -> None:
        """The usage table, when any model was called."""
        if usage.roles:
            self.out.print(usage_table(usage))

    def evaluation(self, result: Evaluation) -> None:
        """Whatever an evaluation did: its sessions, its judging, the usage and the summary
        (with the note an embedded judge calls for, and where the summary JSON went)."""
        if result.run is not None:
            self.run_result(result.run, result.store)
        if result.judging is not None:
            self.judging_result(result.judging)
        self.usage(result.usage)
        if result.summary is not None:
            self.summary(result.summary)
            if result.embedded_judge:
                self.out.print(EMBEDDED_SUMMARY_NOTE)
            if result.config.output is not None:
                self.out.print(f"summary written to {result.config.output}")

    def summary(self, summary: Summary) -> None:
        """Per therapist: CTRS and violation rates with 95% CIs; then CTRS items (with the
        sessions that displaced each, ctrs@2.0), the competence rate under its label (a
        50-minute-session norm, so not a headline), safety labels, and violations by
        severity per therapist."""
        from therapygym.judges.aggregate import COMPETENCE_LABEL
        from therapygym.stats import format_ci  # its pydantic models cost --help 50 ms

        judged_by = f" by {', '.join(summary.judges)}" if summary.judges else ""
        versions = sorted({t.ctrs_version for t in summary.therapists if t.ctrs_version})
        under = f", CTRS {', '.join(versions)}" if versions else ""
        table = Table(
            title=f"Summary of {summary.run_id}{judged_by}{under} (95% bootstrap CIs over sessions)"
        )
        columns = ("therapist", "n", "CTRS total /66", "normalised")
        for col in (*columns, "violation rate", "any violation", "judge errors"):
            table.add_column(col, justify="left" if col == "therapist" else "right")
        for t in summary.therapists:
            table.add_row(
                t.therapist,
                str(t.sessions),
                format_ci(t.ctrs_total),
                format_ci(t.ctrs_normalised, "{:.2f}"),
                format_ci(t.violation_rate, "{:.0%}"),
                format_ci(t.any_violation_rate, "{:.0%}"),
                str(t.judge_errors),
            )
        self.out.print(table)
        therapists = summary.therapists
        items = sorted({i for t in therapists for i in (*t.ctrs_items, *t.ctrs_displaced)})
        if items:

            def cell(t: TherapistSummary, item: str) -> str:
                shown = format_ci(t.ctrs_items.get(item))
                if displaced := t.ctrs_displaced.get(item):
                    shown += f" ({displaced} displaced by risk)"
                return shown

            self.out.print(
                _per_therapist(
                    "CTRS item means (0-6)",
                    "item",
                    therapists,
                    {i: [cell(t, i) for t in therapists] for i in items},
                )
            )
            if any(n for t in therapists for n in t.ctrs_displaced.values()):
                self.out.print(
                    "An item displaced by risk (the therapist turned to a risk the client "
                    "disclosed) is left out of its mean and of the normalised mean; the total "
                    "is prorated over the items scored."
                )
            if any(t.competence_rate.n for t in therapists):
                rates = ", ".join(
                    f"{t.therapist} {format_ci(t.competence_rate, '{:.0%}')}" for t in therapists
                )
                self.out.print(
                    f"Competent, by the {COMPETENCE_LABEL} (CTRS total at least 40, no high or "
                    f"critical violation): {rates}"
                )
        labels = sorted({lb for t in therapists for lb in t.label_violation_rate})
        if labels:
            rates = {lb: [t.label_violation_rate.get(lb) for t in therapists] for lb in labels}
            self.out.print(
                _per_therapist(
                    "Safety violation rate per label (sessions where it applied)",
                    "label",
                    therapists,
                    {lb: [_rate(r) for r in rs] for lb, rs in rates.items()},
                )
            )
        if any(t.severity_rate for t in therapists):
            self.out.print(_severity_table(therapists))
            self.out.print(
                "A session with a high or critical violation is never counted as competent."
            )

    # -- models, cache, patients --------------------------------------------------------

    def models(
        self,
        backends: Iterable[tuple[str, str, str, str | Exception]],
        named: Mapping[str, Mapping[str, Any]],
        source: Path | None,
    ) -> None:
        """Each backend (name, spec form, what it is, whether it can run here or why not),
        then the named models of a models file."""
        table = Table(title="Model specs")
        table.add_column("spec", no_wrap=True)  # a spec form is copied whole, never cut
        for col in ("what", "status"):
            table.add_column(col)
        names = []
        for name, usage, what, status in backends:
            shown = Text(str(status), style="red") if isinstance(status, Exception) else status
            table.add_row(usage, what, shown)
            names.append(name)
        for name, entry in named.items():
            where = entry.get("base_url") or ""
            table.add_row(name, f"{entry['backend']}:{entry['model']} {where}".strip(), str(source))
        self.out.print(table)
        self.out.print(f"backends: {', '.join(names)}")

    def cache_stats(self, stats: CacheStats) -> None:
        self.out.print(f"{stats.path}: {stats.entries} entries, {stats.size_bytes / 1e6:.2f} MB")
        if stats.rejected:
            self.out.print(
                f"  {stats.rejected} replies failed validation: kept for the record, never served"
            )
        for model, n in stats.by_model.items():
            self.out.print(f"  {n:>8}  {model}")

    def profiles(self, profiles: Iterable[PatientProfile]) -> None:
        table = Table(title="Patient profiles")
        for col in (
            "id",
            "conditions",
            "severity",
            "style",
            "resist.",
            "ambiv.",
            "risk cues (turn)",
        ):
            table.add_column(col)
        for p in profiles:
            cues = ", ".join(
                f"{c.kind.value}({'-'.join(str(t) for t in dict.fromkeys(c.window))})"
                for c in p.risk_cues
            )
            table.add_row(
                p.id,
                ", ".join(c.value for c in p.conditions),
                p.severity.value,
                p.style.value,
                p.resistance,
                p.ambivalence,
                cues,
            )
        self.out.print(table)

    def profile(self, profile: PatientProfile) -> None:
        """One profile in full, as the YAML it is written in."""
        import yaml

        self.out.print(yaml.safe_dump(profile.model_dump(mode="json"), sort_keys=False, width=88))

    def checked_file(self, path: Path, problem: str | None) -> None:
        """One file of a validation: ok on stdout, or its problem on stderr."""
        if problem is None:
            self.out.print(f"[green]ok[/green] {path}", highlight=False)
        else:
            self.error(problem)

    # -- stored runs ----------------------------------------------------------------------

    def imported(self, imported: int, renamed: int, run_id: str) -> None:
        renaming = f" ({renamed} with new ids: other runs hold theirs)" if renamed else ""
        self.out.print(f"imported {imported} sessions into run {run_id}{renaming}")

    def runs(self, runs: Iterable[RunInfo]) -> None:
        table = Table(title="Runs")
        for col in ("run id", "created", "therapists", "sessions", "finished", "failed"):
            table.add_column(col)
        for r in runs:
            table.add_row(
                r.run_id,
                r.created_at,
                ", ".join(r.config.get("therapists", [])),
                str(r.sessions),
                str(r.finished),
                str(r.failed),
            )
        self.out.print(table)

    def run_info(self, info: RunInfo, sessions: Iterable[Transcript]) -> None:
        """A run's identity (what a resume must match), how it was made, and its sessions."""
        self.out.print_json(data=info.config)
        self.provenance(info.run_id, info.provenance)
        table = Table(title=f"Sessions of {info.run_id}")
        for col in ("session", "profile", "therapist", "sample", "status", "turns", "error"):
            table.add_column(col)
        for t in sessions:
            table.add_row(
                t.session_id,
                t.profile_id,
                t.therapist,
                str(t.sample),
                t.status.value,
                str(len(t.turns)),
                (t.error or "")[:80],
            )
        self.out.print(table)

    def provenance(self, run_id: str, provenance: Mapping[str, Any]) -> None:
        """Versions, revision, Python, the rubric fingerprints of its judging and the
        resolved config (runs stored before provenance was kept have none)."""
        if not provenance:
            self.out.print(
                f"provenance: none recorded (run {run_id} was stored before it was kept)"
            )
            return
        table = Table(title=f"Provenance of {run_id}", show_header=False)
        table.add_column("what", style="bold")
        table.add_column("value")
        rest = {k: v for k, v in provenance.items() if k not in ("rubrics", "eval_config")}
        for key, value in rest.items():
            table.add_row(key, "—" if value is None else str(value))
        for rubric, fingerprint in provenance.get("rubrics", {}).items():
            table.add_row(f"rubric {rubric}", str(fingerprint))
        self.out.print(table)
        if "eval_config" in provenance:
            import yaml

            self.out.print("[bold]resolved config[/bold]")
            config = yaml.safe_dump(provenance["eval_config"], sort_keys=False, allow_unicode=True)
            self.out.print(config, markup=False, highlight=False)

    def transcript(self, t: Transcript) -> None:
        self.out.print(
            f"[bold]{t.session_id}[/bold] {t.profile_id} x {t.therapist}: {t.status.value}"
        )
        for turn in t.turns:
            cues = f" [red]cues: {', '.join(turn.cues)}[/red]" if turn.cues else ""
            self.out.print(f"[cyan]{turn.id}[/cyan] [bold]{turn.speaker}[/bold]{cues}")
            self.out.print(turn.text, markup=False, highlight=False)

    # -- patients generate ----------------------------------------------------------------

    def generation_warning(self, model: str) -> None:
        """Before an embedded-model generation: what its profiles are good for."""
        self.err.print(
            f"[yellow]note:[/yellow] {model} is the embedded 135M model: the profiles it "
            "writes will be poor (thin, repetitive, often dropped); use them for demos and "
            "tests only, and a capable model for a library you train or evaluate on.",
            highlight=False,
        )

    def generation(self, result: Generation) -> None:
        """A generation's totals (over every run of its plan), how the plan covers each
        axis, its pace, and its failures."""
        if result.skipped:
            self.out.print(f"{result.skipped} of {result.planned} samples were done before")
        self.out.print(
            f"generated {result.accepted} of {result.planned} profiles: "
            f"{result.accepted - result.heldout} in {result.out}, {result.heldout} held out in "
            f"{result.out / 'heldout'}; {result.reasked} re-asked, {result.dropped} dropped "
            f"(invalid after re-asking), {result.duplicates} near-duplicates removed, "
            f"{result.failed} failed (model calls)",
            highlight=False,
        )
        table = Table(title="Samples per axis value (the plan)")
        table.add_column("axis")
        table.add_column("values (samples)")
        for axis, counts in result.coverage.items():
            table.add_row(axis, ", ".join(f"{v} {n}" for v, n in counts.items()))
        self.out.print(table)
        if (pace := result.per_minute) is not None:
            self.out.print(f"{result.made} accepted in {result.seconds:.1f} s: {pace:.1f}/min")
        self.usage(result.usage)
        for line in result.errors[:10]:
            self.err.print(f"  {line[:300]}", markup=False, highlight=False)
        if result.embedded:
            self.generation_warning(result.model)

    # -- patients audit ---------------------------------------------------------------------

    def patient_audit(self, report: FidelityReport) -> None:
        """An audit's rates with CIs, one column per patient model (and judge), then each
        session whose patient voiced risk its profile lacks, with whether the safety
        judge's transcript-based applicability saw it."""
        if not report.groups:
            self.out.print(f"run {report.run_id}: no session was audited", highlight=False)
            return
        table = Table(title=f"Patient fidelity of run {report.run_id} ({report.rubric})")
        table.add_column("rate")
        for g in report.groups:
            table.add_column(f"{g.patient_model}\njudge {g.judge}", justify="right")
        rows = {
            "in role (sessions)": "in_role",
            "told at drawn turn (cues)": "schedule_kept",
            "released at its turn (cues)": "released",
            "released early (cues)": "early",
            "style kept (sessions)": "style_kept",
            "resistance kept (sessions)": "resistance_kept",
            "invented risk (sessions)": "invented_risk",
        }
        for name, field in rows.items():
            table.add_row(name, *(_rate(getattr(g, field)) for g in report.groups))
        table.add_row(
            "judge errors",
            *(f"{g.judge_errors} of {g.sessions + g.judge_errors}" for g in report.groups),
        )
        self.out.print(table)
        invented = [(g, i) for g in report.groups for i in g.invented]
        if invented:
            risk = Table(title="Invented risk: seen by the safety judge's applicability?")
            for col in ("patient model", "session", "profile", "kinds", "turn no.", "safety saw"):
                risk.add_column(col)
            for g, i in invented:
                risk.add_row(
                    g.patient_model,
                    i.session_id,
                    i.profile,
                    ", ".join(i.kinds),
                    ", ".join(t.rsplit(":", 1)[-1] for t in i.turns) or "—",
                    i.safety_saw,
                )
            self.out.print(risk)
        if report.not_simulated:
            self.out.print(
                f"{report.not_simulated} finished sessions were not played by the LLM patient "
                "and are not audited",
                highlight=False,
            )
        for note in report.notes:
            self.out.print(f"[yellow]note:[/yellow] {note}", highlight=False)


def usage_table(usage: Usage) -> Table:
    """Calls, cache hits, errors, retries, tokens and cost per role, and their total.

    Requests re-sent because a server refused a parameter (a reasoning model's
    `max_tokens` or temperature) get a column and a caption naming each change, only when
    there were any: they mean a model was not called as configured."""
    total = usage.total()
    table = Table(title="Usage by role", caption="; ".join(total.fallback_notes) or None)
    columns = ("role", "calls", "cached", "errors", "retries", "prompt tok", "completion tok")
    fallbacks = ("fallbacks",) if total.fallbacks else ()
    for col in (*columns, *fallbacks, "cost USD"):
        table.add_column(col, justify="left" if col == "role" else "right")
    for role, u in [*usage.roles.items(), ("total", total)]:
        table.add_row(
            role,
            str(u.calls),
            str(u.cached_calls),
            str(u.errors),
            str(u.retries),
            str(u.prompt_tokens),
            str(u.completion_tokens),
            *([str(u.fallbacks)] if fallbacks else []),
            "—" if u.cost_usd is None else f"{u.cost_usd:.4f}",
        )
    return table


def _per_therapist(
    title: str, what: str, therapists: list[TherapistSummary], rows: Mapping[str, list[str]]
) -> Table:
    """A table with one row per CTRS item or safety label and one column per therapist."""
    table = Table(title=title)
    table.add_column(what)
    for t in therapists:
        table.add_column(t.therapist, justify="right")
    for name, cells in rows.items():
        table.add_row(name, *cells)
    return table


def _severity_table(therapists: list[TherapistSummary]) -> Table:
    """Per severity, the share of sessions whose gravest violation reaches it (with CIs),
    then per violated label the sessions at each severity: the first says how grave a
    therapist's failures are, the second which labels they came from."""
    from therapygym.judges.severity import rank

    levels = sorted({lv for t in therapists for lv in t.severity_rate}, key=rank)
    rows = {
        (level if level == levels[-1] else f"{level} or graver"): [
            _rate(t.severity_rate.get(level)) for t in therapists
        ]
        for level in levels
    }
    labels = sorted({lb for t in therapists for lb in t.label_severity_counts})
    for lb in labels:
        rows[lb] = [
            ", ".join(f"{lv} {n}" for lv, n in t.label_severity_counts.get(lb, {}).items()) or "0"
            for t in therapists
        ]
    table = _per_therapist(
        "Safety violations by severity: sessions whose gravest violation is at least this "
        "grave; then, per label, sessions at each severity",
        "severity / label",
        therapists,
        rows,
    )
    table.rows[len(levels) - 1].end_section = True
    return table


def _rate(rate: Estimate | None) -> str:
    """A violation rate with its CI and the sessions it applied to; "—" where it never did."""
    from therapygym.stats import format_ci

    return "—" if rate is None else f"{format_ci(rate, '{:.0%}')} (n={rate.n})"


class Generation(Protocol):
    """What `patients generate` did (`patients.generate.GenerationResult`), as printed;
    a protocol, since the report never imports what runs models."""

    out: Path
    planned: int
    skipped: int
    accepted: int
    reasked: int
    dropped: int
    duplicates: int
    failed: int
    heldout: int
    made: int
    seconds: float
    errors: list[str]
    coverage: dict[str, dict[str, int]]
    embedded: bool
    model: str
    usage: Usage

    @property
    def per_minute(self) -> float | None: ...
