"""`therapygym calibrate`: judge a bench's dialogues, then measure agreement with the experts.

The bench's transcripts go into the run store as an ordinary run (id derived from the
bench's content), and the judges score them through the same `judge_run` that judges
simulated sessions: one judging path, resumable unit by unit, every score traceable to its
judge, rubric version and prompt. Re-running the command skips what is judged.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from therapygym.artefacts import write_text
from therapygym.calibration.analysis import (
    TOTAL,
    ItemReport,
    JudgeScores,
    MIScores,
    Settings,
    check_report,
    item_reports,
    label_reports,
    separation,
)
from therapygym.calibration.bench import CHECK_ID, Bench, BenchError
from therapygym.calibration.mi_analysis import mi_report
from therapygym.calibration.recalibrate import Method, recalibrate
from therapygym.calibration.render import html_section
from therapygym.calibration.report import CalibrationReport, JudgeInfo
from therapygym.calibration.weights import NO_WEIGHTS, recommend_weights, write_weights
from therapygym.judges.aggregate import session_scores
from therapygym.judges.base import RubricKind
from therapygym.judges.mi import combine_mi
from therapygym.judges.plan import JudgePlan
from therapygym.judges.rubric import MIRubric, builtin_rubric
from therapygym.models import ResponseCache
from therapygym.records import ScoreRecord, Transcript
from therapygym.runner import judge_transcripts
from therapygym.store import RunStore
from therapygym.summary import embedded_judges

EMBEDDED_NOTE = (
    "the judge is the embedded 135M model: its agreement numbers show the pipeline works, "
    "not that the model can judge therapy"
)


def rubrics_needed(bench: Bench) -> tuple[RubricKind, ...]:
    """CTRS when experts scored items or labelled quality; safety when they labelled it;
    the check-question judge when dialogues carry check questions; MI when they coded MI
    behaviour or rated MI globals (AnnoMI: CTRS for its quality labels and MI for its
    codes). Empty when the experts rated nothing a judge can score (`nothing_to_judge`
    says why)."""
    kinds: list[RubricKind] = []
    if bench.ctrs_items() or any(d.quality() for d in bench.dialogues.values()):
        kinds.append("ctrs")
    if bench.safety_labels():
        kinds.append("safety")
    if any(d.check for d in bench.dialogues.values()):
        kinds.append("check")
    if bench.mi_coded():
        kinds.append("mi")
    return tuple(kinds)


def nothing_to_judge(bench: Bench) -> str:
    """Why a judge has nothing to be compared with on `bench` (when `rubrics_needed` is
    empty), and what to do instead. A bench with its own rubric (MindEval's c1..c6) is
    the usual case: its criteria are not what any judge rubric scores."""
    criteria = bench.criteria()
    if criteria:
        return (
            f"{bench.name}: the experts scored only the bench's own criteria "
            f"({', '.join(criteria)}), which no judge rubric scores (a judge scores CTRS "
            "items, safety labels and check questions), so there is nothing to compare a "
            "judge with; use --humans-only for the experts' agreement on them, or map the "
            "criteria that are CTRS items onto CTRS ids in the bench's mapping"
        )
    return (
        f"{bench.name}: the experts gave no CTRS scores, safety labels, quality labels, "
        "check answers or MI codes for a judge to be compared with; use --humans-only"
    )


def run_id_for(bench: Bench, max_turns: int | None) -> str:
    return f"calibrate-{bench.digest}" + (f"-t{max_turns}" if max_turns else "")


async def judge_bench(
    bench: Bench,
    plan: JudgePlan,
    store: RunStore,
    *,
    cache: ResponseCache | None,
    models_file: Path | str | None = None,
    concurrency: int = 8,
    max_turns: int | None = None,
    console: Console | None = None,
) -> tuple[JudgeScores, JudgeInfo]:
    """Store the bench's transcripts as a run and judge it; return the scores by dialogue."""
    run_id = run_id_for(bench, max_turns)
    transcripts = bench.transcripts(run_id, max_turns=max_turns)
    if not transcripts:
        raise ValueError(f"{bench.name}: no dialogue has a transcript to judge")
    result, records = await judge_transcripts(
        store,
        run_id,
        {"kind": "calibration", "bench_digest": bench.digest, "max_turns": max_turns},
        transcripts,
        plan,
        cache=cache,
        models_file=models_file,
        concurrency=concurrency,
        console=console,
    )
    scores = JudgeScores()
    for s, t in zip(session_scores(transcripts, records), transcripts, strict=True):
        if s.ctrs_items:
            scores.ctrs[t.profile_id] = {k: c.value for k, c in s.ctrs_items.items()}
        if s.safety:
            scores.safety[t.profile_id] = {
                k: {"yes": True, "no": False}.get(v.verdict) for k, v in s.safety.items()
            }
        verdict = s.check.get(CHECK_ID)
        if verdict is not None and verdict.verdict in ("yes", "no"):
            scores.check[t.profile_id] = verdict.verdict == "yes"
    scores.mi = mi_scores(transcripts, records)
    usage = result.usage.total()
    failed = sum(r.error is not None for r in records)
    specs = sorted({j[0] for j in result.judges})
    info = JudgeInfo(
        run_id=run_id,
        specs=specs,
        embedded=embedded_judges(specs, store.run(run_id).provenance),
        rubrics=[
            {"judge": j, "rubric": r, "version": v, "prompt_fingerprint": f}
            for j, r, v, f in result.judges
        ],
        dialogues=len(transcripts),
        truncated_dialogues=sum(bool(t.meta.get("truncated")) for t in transcripts),
        max_turns=max_turns,
        units=len(records),
        failed_units=failed,
        errors=sorted({r.error for r in records if r.error})[:10],
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
    )
    return scores, info


def mi_scores(transcripts: list[Transcript], records: list[ScoreRecord]) -> dict[str, MIScores]:
    """The MI judges' codes (by turn position) and global ratings per bench dialogue, the
    raters of a panel combined as `judges.mi.combine_mi` does."""
    by_session: dict[str, list[ScoreRecord]] = {}
    for r in records:
        if r.rubric_id == "mi":
            by_session.setdefault(r.session_id, []).append(r)
    out = {}
    for t in transcripts:
        mine = by_session.get(t.session_id)
        if not mine:
            continue
        rubric = builtin_rubric("mi", mine[0].rubric_version)
        assert isinstance(rubric, MIRubric)
        combined = combine_mi(mine, rubric)
        if combined is None:
            continue
        position = {turn.id: turn.index for turn in t.turns}
        out[t.profile_id] = MIScores(
            codes={position[k]: code for k, code in combined.codes.items() if k in position},
            global_ratings=combined.global_ratings,
        )
    return out


def build_report(
    bench: Bench,
    judge: tuple[JudgeScores, JudgeInfo] | None,
    settings: Settings,
    *,
    method: Method | None = "isotonic",
    fit_fraction: float = 0.5,
) -> CalibrationReport:
    """Every statistic the bench and the judge's scores allow (humans only without a judge)."""
    scores, info = judge if judge else (None, None)
    items, total, criteria, skipped = item_reports(bench, scores, settings)
    labels = label_reports(bench, scores, settings)
    notes = [f"criterion {name} is not reported: {why}" for name, why in skipped.items()]
    recal = None
    if scores is not None and method is not None and (items or total):
        reports = [*items, *([total] if total else [])]
        judge_by_item, expert_by_item = _for_recalibration(bench, scores, reports)
        recal = recalibrate(
            judge_by_item,
            expert_by_item,
            scales={r.item: r.scale for r in reports},
            method=method,
            fit_fraction=fit_fraction,
            seed=settings.seed,
        )
    if info is not None:
        if info.truncated_dialogues:
            notes.append(
                f"{info.truncated_dialogues} of {info.dialogues} transcripts were cut to their "
                f"first {info.max_turns} turns for the judge; the experts rated them whole"
            )
        if info.failed_units:
            notes.append(
                f"{info.failed_units} of {info.units} judge units failed and are missing from "
                "the judge comparisons (judges that fail are not failing at random)"
            )
        if info.embedded:
            notes.append(EMBEDDED_NOTE)
    rated = [*items, *criteria]
    if rated and not any(r.expert_pairs for r in rated):
        notes.append("no dialogue is rated by two experts: there is no human-human ceiling")
    weights = recommend_weights(
        items,
        labels,
        bench=bench.name,
        bench_digest=bench.digest,
        min_human_alpha=settings.min_human_alpha,
    )
    if weights is None:
        notes.append(NO_WEIGHTS)
    elif unrated := [i for i in weights.not_assessed if i in weights.ctrs]:
        notes.append(
            f"reward weights: {', '.join(unrated)} left out (weight 0): the bench cannot "
            "vouch for them (not rated, or never by two experts on one dialogue)"
        )
    return CalibrationReport(
        bench={"name": bench.name, "digest": bench.digest, **bench.summary()},
        judge=info,
        settings={
            "resamples": settings.resamples,
            "seed": settings.seed,
            "level": settings.level,
            "min_human_alpha": settings.min_human_alpha,
            "min_shared_dialogues": settings.min_shared_dialogues,
            "recalibration": method,
            "fit_fraction": fit_fraction,
        },
        items=items,
        total=total,
        criteria=criteria,
        labels=labels,
        checks=check_report(bench, scores, settings),
        separation=separation(bench, scores, settings),
        recalibration=recal,
        weights=weights,
        notes=notes,
        mi=mi_report(bench, scores, settings),
    )


def _for_recalibration(
    bench: Bench, scores: JudgeScores, reports: list[ItemReport]
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """Judge scores and the experts' mean, by item then dialogue."""
    items = bench.ctrs_items()
    judge: dict[str, dict[str, float]] = {}
    expert: dict[str, dict[str, float]] = {}
    for d in bench.dialogues.values():
        humans = d.human_ratings()
        for report in reports:
            item = report.item
            if item == TOTAL:
                values = [
                    float(sum(r.ctrs[i] for i in items))  # type: ignore[misc]
                    for r in humans
                    if all(r.ctrs.get(i) is not None for i in items)
                ]
                mine = scores.ctrs_total(d.id, items)
            else:
                values = [float(r.ctrs[item]) for r in humans if r.ctrs.get(item) is not None]  # type: ignore[arg-type]
                mine = scores.ctrs.get(d.id, {}).get(item)
            if values and mine is not None:
                expert.setdefault(item, {})[d.id] = sum(values) / len(values)
                judge.setdefault(item, {})[d.id] = mine
    return judge, expert


async def calibrate(
    bench: Bench,
    plan: JudgePlan | None,
    store: RunStore | None,
    settings: Settings,
    *,
    method: Method | None = "isotonic",
    fit_fraction: float = 0.5,
    cache: ResponseCache | None = None,
    models_file: Path | str | None = None,
    concurrency: int = 8,
    max_turns: int | None = None,
    console: Console | None = None,
) -> CalibrationReport:
    """Judge the bench (unless `plan` is None: experts only) and build the report."""
    judged = None
    if plan is not None:
        if store is None:
            raise ValueError("judging a bench needs a run store")
        if not rubrics_needed(bench):
            raise BenchError(nothing_to_judge(bench))
        judged = await judge_bench(
            bench,
            plan,
            store,
            cache=cache,
            models_file=models_file,
            concurrency=concurrency,
            max_turns=max_turns,
            console=console,
        )
    return build_report(bench, judged, settings, method=method, fit_fraction=fit_fraction)


def write_outputs(report: CalibrationReport, directory: Path) -> dict[str, Path]:
    """calibration.json, the HTML section and, when the bench supports one,
    reward_weights.yaml, each written atomically; returns the paths written (a note in the
    report says why there are no weights)."""
    paths = {
        "report": directory / "calibration.json",
        "html": directory / "calibration_section.html",
    }
    for key, text in (
        ("report", report.model_dump_json(indent=2)),
        ("html", html_section(report)),
    ):
        write_text(paths[key], text)
    if report.weights is not None:
        paths["weights"] = directory / "reward_weights.yaml"
        write_weights(report.weights, paths["weights"])
    return paths
