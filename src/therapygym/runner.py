"""The one job runner: sessions, judgement units and probe exchanges, concurrent and
resumable, each saved to the store as soon as it is done; and `evaluate()`, which runs
a run's sessions and judges each one as soon as it is stored.

The runner owns nothing clinical: it builds participants and judges, schedules
`Session.run()` and `RubricJudge.score()` under a concurrency limit (`bounded`, the one
batch loop), saves what finishes and shows progress. Re-running a run id skips the
sessions the store holds as finished and the judgement units it holds as complete;
failed ones are tried again. Judges never touch the store: they score a transcript and
the runner saves the records.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Sequence,
)
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from therapygym.config import EvalConfig, Plans, RunPlan
from therapygym.judges.base import RubricJudge
from therapygym.judges.check import QUESTIONS_KEY
from therapygym.judges.plan import JudgePlan
from therapygym.judges.registry import build_judges
from therapygym.models import AccountedModel, BaseChatModel, ResponseCache, UsageLedger, load_model
from therapygym.models.spec import is_embedded, resolve_spec
from therapygym.patients.profile import PatientProfile
from therapygym.patients.simulator import LLMPatient, simulated_meta, simulator_prompt
from therapygym.provenance import collect as collect_provenance
from therapygym.records import (
    FINISHED,
    ScoreRecord,
    SessionConfig,
    Speaker,
    Transcript,
    seed_for,
    session_id_for,
)
from therapygym.session import Participant, Session, Utterance
from therapygym.shards import Shard, other_shard
from therapygym.store import RunStore
from therapygym.summary import Summary, summarise
from therapygym.therapists import load_therapist

logger = logging.getLogger(__name__)

K = TypeVar("K")  # what names one session of a run (profile x therapist x sample, ...)
R = TypeVar("R")


async def bounded(
    work: Iterable[Callable[[], Awaitable[R]]] | AsyncIterable[Callable[[], Awaitable[R]]],
    concurrency: int,
) -> AsyncIterator[R]:
    """Start each piece of `work`, at most `concurrency` at a time, and yield results in the
    order they finish: the one batch loop behind sessions, judgement units and probes.

    `work` may be an async iterable whose pieces come while earlier ones run (`evaluate`
    judges each session as it is stored): the loop then ends once it is exhausted and every
    piece has finished.

    Cancelled while it waits for the next result (Ctrl-C; a caller's loop body does not
    wait), or when a piece (or the iterable) raises, it cancels the pieces still running and
    waits for them before it lets go: none goes on saving, or calling a model the caller
    then closes."""
    gate = asyncio.Semaphore(concurrency)
    finished: asyncio.Queue[asyncio.Future[Any]] = asyncio.Queue()
    waiting: set[asyncio.Future[Any]] = set()  # started, and not yet yielded

    async def one(make: Callable[[], Awaitable[R]]) -> R:
        async with gate:
            return await make()

    def start(piece: Awaitable[Any]) -> asyncio.Future[Any]:
        future = asyncio.ensure_future(piece)
        waiting.add(future)
        future.add_done_callback(finished.put_nowait)
        return future

    async def feed(pieces: AsyncIterable[Callable[[], Awaitable[R]]]) -> None:
        async for make in pieces:
            start(one(make))

    feeder = None
    if isinstance(work, AsyncIterable):
        feeder = start(feed(work))
    else:
        for make in work:
            start(one(make))
    try:
        while waiting:
            done = await finished.get()
            waiting.discard(done)
            result = done.result()  # a piece's (or the feeder's) exception ends the batch
            if done is not feeder:
                yield result
    finally:
        for future in waiting:
            future.cancel()
        await asyncio.gather(*waiting, return_exceptions=True)


@dataclass
class RunResult:
    run_id: str
    planned: int
    skipped: int
    completed: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    usage: UsageLedger = field(default_factory=UsageLedger)


@dataclass
class Therapists:
    """The therapists of one run, built once and shared by its sessions, with the models
    behind them (and any other model the run built) to close at the end."""

    by_spec: dict[str, Participant]
    bases: list[BaseChatModel]

    async def aclose(self) -> None:
        for base in self.bases:
            await base.aclose()


def load_therapists(
    specs: tuple[str, ...],
    ledger: UsageLedger,
    cache: ResponseCache | None,
    models_file: Path | str | None,
    prompt: str | None = None,
) -> Therapists:
    bases: list[BaseChatModel] = []
    therapists: dict[str, Participant] = {}
    for spec in specs:
        therapist, owned = load_therapist(
            spec, cache=cache, models_file=models_file, prompt=prompt, ledger=ledger
        )
        bases.extend(owned)
        therapists[spec] = therapist
    return Therapists(therapists, bases)


@dataclass(frozen=True)
class SessionJob:
    """One session to run: who the patient is, which therapist, and any turns that are
    already said when it starts (a probe's scripted context)."""

    session_id: str
    profile_id: str
    therapist: str
    sample: int
    patient: Participant
    config: SessionConfig
    profile_version: int | None = None
    context: tuple[tuple[Speaker, str], ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None  # default: derived from the session id


def _say_stopped(
    console: Console | None,
    store: RunStore,
    run_id: str,
    what: str,
    total: int,
    before: int,
    saved: list[bool],
) -> None:
    """When a batch is cancelled (Ctrl-C), say on the progress console how much of it the
    store holds: `before` done by earlier runs, plus `saved` now (True for each failed one).
    Only the batch knows how far it got, and a resume starts from there."""
    if console is not None:
        failed = sum(saved)
        retried = f" ({failed} of them failed: a resume retries those)" if failed else ""
        console.print(
            f"stopped: {before + len(saved)} of {total} {what} of run {run_id} are saved in "
            f"{store.path}{retried}",
            markup=False,
            highlight=False,
        )


def _progress(console: Console | None) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("failed {task.fields[failed]}"),
        TextColumn("{task.fields[tokens]} tok"),
        TextColumn("{task.fields[cost]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=console is None,
        transient=False,
    )


@contextmanager
def _showing(console: Console | None, shared: Progress | None) -> Iterator[Progress]:
    """The progress display a batch adds its bar to: `shared`, when `evaluate` shows the
    sessions and their judging together (a console holds one live display at a time),
    else one of the batch's own."""
    if shared is not None:
        yield shared
        return
    with _progress(console) as own:
        yield own


def _fit(models: Iterable[BaseChatModel], in_flight: int, console: Console | None) -> None:
    """Let each model of a batch take the `in_flight` requests the batch keeps going
    (`ModelConfig.limit_for`), and say once per spec where the spec's own `concurrency=`
    holds the batch below that: a per-model limit never undercuts a run's unseen."""
    warned: set[str] = set()
    for model in models:
        model.fit(in_flight)
        config = model.config
        if config.undercuts(in_flight) and model.spec not in warned:
            warned.add(model.spec)
            line = (
                f"warning: model {model.spec} allows {config.concurrency} requests in flight "
                f"(its concurrency={config.concurrency}), fewer than the {in_flight} this run "
                f"keeps going; raise concurrency= in its spec, or remove it to follow the run's"
            )
            if console is not None:
                console.print(line, markup=False, highlight=False, soft_wrap=True)
            else:
                logger.warning(line)


async def run_plan(
    plan: RunPlan,
    profiles: list[PatientProfile],
    store: RunStore,
    *,
    cache: ResponseCache | None,
    concurrency: int = 8,
    models_file: Path | str | None = None,
    console: Console | None = None,
    provenance: dict[str, Any] | None = None,
    shard: Shard | None = None,
    on_saved: Callable[[Transcript], None] | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """Run every (profile, therapist, sample) session of the plan that is not yet done.
    `provenance` adds keys (the resolved config) to what a new run records of its making.
    A `shard` keeps the sessions whose id it holds, and is recorded with the run.
    `on_saved` and `progress` are `run_jobs`'s."""
    by_id = {p.id: p for p in profiles}
    jobs = itertools.product(plan.profiles, plan.therapists, range(plan.samples))
    keys = [(by_id[ref.split("@")[0]], spec, sample) for ref, spec, sample in jobs]

    def sid(key: tuple[PatientProfile, str, int]) -> str:
        profile, spec, sample = key
        return session_id_for(plan.run_id, profile.id, spec, sample)

    if shard is not None:
        keys = [k for k in keys if shard.holds(sid(k))]

    def build(
        todo: list[tuple[PatientProfile, str, int]], ledger: UsageLedger
    ) -> tuple[list[SessionJob], Therapists]:
        patient_base = load_model(plan.patient_model, cache=cache, models_file=models_file)
        patient_model = AccountedModel(patient_base, "patient", ledger)
        people = load_therapists(plan.therapists, ledger, cache, models_file, plan.therapist_prompt)
        people.bases.append(patient_base)
        # Every session of a profile gets the same simulator prompt: rendered once per
        # profile, not once per session (with the ids and seeds computed once, 72 -> 18 µs
        # of CPU per session, so 0.55 s less before the first call of a run of 10,240
        # sessions; docs/benchmarks.md, issue 22 item 6).
        prompts: dict[str, str] = {}
        jobs = []
        for profile, spec, sample in todo:
            session_id = sid((profile, spec, sample))
            if profile.id not in prompts:
                prompts[profile.id] = simulator_prompt(profile)
            patient = LLMPatient(
                profile,
                patient_model,
                cue_seed=seed_for(session_id),
                system_prompt=prompts[profile.id],
            )
            meta = simulated_meta(profile, patient.cue_turns)
            if plan.check_questions:
                meta[QUESTIONS_KEY] = dict(plan.check_questions)
            jobs.append(
                SessionJob(
                    session_id=session_id,
                    profile_id=profile.id,
                    profile_version=profile.version,
                    therapist=spec,
                    sample=sample,
                    patient=patient,
                    config=plan.session,
                    meta=meta,
                )
            )
        return jobs, people

    return await run_jobs(
        plan.run_id,
        {**plan.record(), "shard": str(shard)} if shard is not None else plan.record(),
        keys,
        session_id=sid,
        build=build,
        store=store,
        concurrency=concurrency,
        console=console,
        provenance=provenance,
        on_saved=on_saved,
        progress=progress,
    )


async def run_jobs(
    run_id: str,
    record: dict[str, Any],
    keys: Sequence[K],
    *,
    session_id: Callable[[K], str],
    build: Callable[[list[K], UsageLedger], tuple[list[SessionJob], Therapists]],
    store: RunStore,
    concurrency: int = 8,
    console: Console | None = None,
    provenance: dict[str, Any] | None = None,
    on_saved: Callable[[Transcript], None] | None = None,
    progress: Progress | None = None,
) -> RunResult:
    """Run a run's sessions that are not finished yet, under a concurrency limit, saving
    each as it ends.

    `record` is the run's identity (a resume with a different one is refused); `keys` are
    its sessions, named by `session_id`; `build` turns the keys still to do into jobs and
    the therapists they need. It is called only when there is work, so a finished run
    loads no model, and before the run is recorded, so a spec that fails to load leaves
    nothing in the store. `on_saved` is told of each session once it is saved (finished
    or failed), which is after the run is recorded; `progress` is a display to add the
    run's bar to (default: one of its own).
    """
    done = store.finished_session_ids(run_id)  # empty for a run not stored yet
    pending = [k for k in keys if session_id(k) not in done]
    ledger = UsageLedger()
    result = RunResult(
        run_id=run_id, planned=len(keys), skipped=len(keys) - len(pending), usage=ledger
    )
    # Models are built before the run is recorded, so a bad spec leaves no run behind
    # (a retry with the spec fixed would otherwise be refused as a changed config).
    todo, people = build(pending, ledger) if pending else ([], None)
    try:
        store.ensure_run(run_id, record, collect_provenance(**(provenance or {})))
    except BaseException:
        if people is not None:
            await people.aclose()
        raise
    if people is None:
        return result
    _fit(people.bases, concurrency, console)

    async def one(job: SessionJob) -> Transcript:
        session = Session(
            session_id=job.session_id,
            patient=job.patient,
            therapist=people.by_spec[job.therapist],
            profile_id=job.profile_id,
            profile_version=job.profile_version,
            config=job.config,
            run_id=run_id,
            sample=job.sample,
            seed=job.seed,
        )
        session.transcript.meta.update(job.meta)
        for speaker, text in job.context:
            session.add(speaker, Utterance(text=text))
        transcript = await session.run()
        store.save_session(transcript)
        # counted here, with the save, not where results are read below: a Ctrl-C can
        # fall between the two
        saved.append(transcript.status == "failed")
        if on_saved is not None:
            on_saved(transcript)
        return transcript

    saved: list[bool] = []
    try:
        with _showing(console, progress) as shown:
            task = shown.add_task(run_id, total=len(todo), failed=0, tokens=0, cost="")
            work = [lambda job=job: one(job) for job in todo]
            async for transcript in bounded(work, concurrency):
                if transcript.status == "failed":
                    result.failed += 1
                    result.errors.append(f"{transcript.session_id}: {transcript.error}")
                else:
                    result.completed += 1
                total = result.usage.total()
                shown.update(
                    task,
                    advance=1,
                    failed=result.failed,
                    tokens=total.total_tokens,
                    cost="" if total.cost_usd is None else f"${total.cost_usd:.4f}",
                )
    except asyncio.CancelledError:  # Ctrl-C
        _say_stopped(console, store, run_id, "sessions", result.planned, result.skipped, saved)
        raise
    finally:
        await people.aclose()
    return result


@dataclass
class JudgeResult:
    units: int
    skipped: int
    judged: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    usage: UsageLedger = field(default_factory=UsageLedger)
    # (judge spec, rubric id, rubric version, prompt fingerprint) of every judge in the plan:
    # what a caller filters stored scores by, so earlier judges of the run do not mix in.
    judges: list[tuple[str, str, str, str]] = field(default_factory=list)


async def judge_run(
    store: RunStore,
    run_id: str,
    plan: JudgePlan,
    *,
    cache: ResponseCache | None,
    models_file: Path | str | None = None,
    concurrency: int = 8,
    console: Console | None = None,
    shard: Shard | None = None,
    stored: AsyncIterable[str] | None = None,
    progress: Progress | None = None,
) -> JudgeResult:
    """Judge every finished session of a run that is not judged yet under this plan.

    The plan is made from the sessions' heads and the judged units; a transcript is read
    when one of its units is judged, so resuming a judged run reads none, and no more than
    `concurrency` transcripts are held at a time. A `shard` judges the sessions it holds,
    of a run stored as that shard (any other store is refused before anything is written).

    `stored` (`evaluate`'s pipeline) streams the ids of finished sessions the run stores
    while it is judged: after those the store held, each is judged as it comes, once (one
    the store already held when judging began is not judged twice), and the judging ends
    when the stream does. `progress` is a display to add the bar to (default: its own).
    """
    stored_shard = store.run(run_id).config.get("shard")
    if shard is not None and stored_shard != str(shard):
        raise other_shard(run_id, store.path, stored_shard, str(shard))
    heads = store.session_heads(run_id)
    session_ids = [h.session_id for h in heads if h.status.value in FINISHED]
    if shard is not None:
        session_ids = [s for s in session_ids if shard.holds(s)]
    done = store.judged_units(run_id)
    ledger = UsageLedger()
    bases = [load_model(spec, cache=cache, models_file=models_file) for spec in plan.judges]
    _fit(bases, concurrency, console)
    panel = [(base, build_judges(plan, AccountedModel(base, "judge", ledger))) for base in bases]

    def units_of(session_ids: Iterable[str]) -> list[tuple[str, RubricJudge, int]]:
        return [
            (session_id, judge, sample)
            for session_id in session_ids
            for _, judges in panel
            for judge in judges
            for sample in range(plan.samples)
        ]

    units = units_of(session_ids)

    def key(
        session_id: str, judge: RubricJudge, sample: int
    ) -> tuple[str, str, str, str, str, int]:
        rubric = judge.rubric
        return (
            session_id,
            judge.model.spec,
            rubric.id,
            rubric.version,
            judge.fingerprint,
            sample,
        )  # type: ignore[attr-defined]

    store.add_provenance(
        run_id, "rubrics", {j.rubric.ref: j.rubric.fingerprint for _, js in panel for j in js}
    )
    # what each judge spec meant when it scored (a models-file name can change later), and
    # whether it is the embedded model, whose scores every summary must flag
    store.add_provenance(
        run_id,
        "judges",
        {
            spec: {
                "backend": (config := resolve_spec(spec, models_file)).backend,
                "model": config.model,
                "embedded": is_embedded(spec, models_file),
            }
            for spec in plan.judges
        },
    )
    todo = [u for u in units if key(*u) not in done]
    result = JudgeResult(
        units=len(units),
        skipped=len(units) - len(todo),
        usage=ledger,
        judges=sorted(
            {
                (j.model.spec, j.rubric.id, j.rubric.version, j.fingerprint)  # type: ignore[attr-defined]
                for _, judges in panel
                for j in judges
            }
        ),
    )

    async def one(session_id: str, judge: RubricJudge, sample: int) -> list[ScoreRecord]:
        records = await judge.score(store.session(session_id), sample=sample)
        store.save_scores(records)
        saved.append(any(r.error for r in records))  # with the save, as in run_jobs
        return records

    saved: list[bool] = []

    async def as_stored(
        more: AsyncIterable[str],
    ) -> AsyncIterator[Callable[[], Awaitable[list[ScoreRecord]]]]:
        """The units to do, then those of each session `more` brings, as it comes."""
        for u in todo:
            yield lambda u=u: one(*u)
        seen = set(session_ids)
        async for session_id in more:
            if session_id in seen:
                continue
            seen.add(session_id)
            new = units_of([session_id])
            fresh = [u for u in new if key(*u) not in done]
            result.units += len(new)
            result.skipped += len(new) - len(fresh)
            for u in fresh:
                yield lambda u=u: one(*u)

    try:
        with _showing(console, progress) as shown:
            task = shown.add_task(f"judging {run_id}", total=len(todo), failed=0, tokens=0, cost="")
            work = [lambda u=u: one(*u) for u in todo] if stored is None else as_stored(stored)
            async for records in bounded(work, concurrency):
                errors = [r for r in records if r.error]
                if errors:
                    result.failed += 1
                    result.errors += [
                        f"{r.session_id} {r.rubric_id} {r.judge}: {r.error}" for r in errors
                    ]
                else:
                    result.judged += 1
                total = result.usage.total()
                shown.update(
                    task,
                    total=result.units - result.skipped,  # grows as sessions are stored
                    advance=1,
                    failed=result.failed,
                    tokens=total.total_tokens,
                    cost="" if total.cost_usd is None else f"${total.cost_usd:.4f}",
                )
    except asyncio.CancelledError:  # Ctrl-C
        _say_stopped(console, store, run_id, "judgement units", result.units, result.skipped, saved)
        raise
    finally:
        for base in bases:
            await base.aclose()
    return result


def plan_records(store: RunStore, run_id: str, result: JudgeResult) -> list[ScoreRecord]:
    """The run's stored scores made by the judges of `result`'s plan, and no others: a run
    judged earlier by other models, rubric versions or settings keeps those apart."""
    wanted = set(result.judges)
    return [
        r
        for r in store.scores(run_id)
        if (r.judge, r.rubric_id, r.rubric_version, r.prompt_fingerprint) in wanted
    ]


async def judge_transcripts(
    store: RunStore,
    run_id: str,
    identity: dict[str, Any],
    transcripts: Sequence[Transcript],
    plan: JudgePlan,
    *,
    provenance: dict[str, Any] | None = None,
    cache: ResponseCache | None,
    models_file: Path | str | None = None,
    concurrency: int = 8,
    console: Console | None = None,
) -> tuple[JudgeResult, list[ScoreRecord]]:
    """Judge transcripts made elsewhere (a bench's, the judge battery's): stored once as
    run `run_id` (`identity` is the run's config, checked on resume), then judged by
    `judge_run` like any run, resuming what is judged; the result and the scores of this
    plan's judges only."""
    store.ensure_run(run_id, identity, provenance)
    stored = store.finished_session_ids(run_id)
    for transcript in transcripts:
        if transcript.session_id not in stored:
            store.save_session(transcript)
    result = await judge_run(
        store,
        run_id,
        plan,
        cache=cache,
        models_file=models_file,
        concurrency=concurrency,
        console=console,
    )
    return result, plan_records(store, run_id, result)


@dataclass
class EvalResult:
    """What `evaluate` did: the sessions it ran (None when it judged a stored run), the
    judging and the summary (None when it only ran sessions), and where they are."""

    config: EvalConfig
    run_id: str
    store: Path
    run: RunResult | None = None
    judging: JudgeResult | None = None
    summary: Summary | None = None
    # an embedded 135M model scored the run: its numbers carry no clinical meaning
    embedded_judge: bool = False

    @property
    def usage(self) -> UsageLedger:
        """Usage by role over the sessions and the judging together."""
        ledger = UsageLedger()
        for part in (self.run, self.judging):
            if part is not None:
                ledger.roles.update(part.usage.roles)
        return ledger


async def _pipelined(
    sessions: Callable[..., Awaitable[RunResult]],
    judging: Callable[..., Awaitable[JudgeResult]],
    console: Console | None,
) -> tuple[RunResult, JudgeResult]:
    """Run a run's sessions and judge each one as soon as it is stored (`eval`): the
    sessions under their concurrency and the judgement units under theirs, at the same
    time, so the patient and therapist servers and the judge servers work together instead
    of in turn. `sessions` and `judging` start `run_plan` and `judge_run`.

    The store ends as a run followed by its judging leaves it: the same sessions, each
    finished one judged once (those an earlier, killed run stored are judged from the
    store, as `judge_run` finds them), failed ones not judged. The judging starts once the
    run is recorded: the sessions' side records it before it saves a session, or ends at
    once with nothing to run. An error on either side, or Ctrl-C, stops both, and each
    says how far it got."""
    arrived: asyncio.Queue[str | None] = asyncio.Queue()  # finished sessions, then None

    def saved(transcript: Transcript) -> None:
        if transcript.status.value in FINISHED:  # a failed one is run again, not judged
            arrived.put_nowait(transcript.session_id)

    async def run(shown: Progress) -> RunResult:
        ran = await sessions(on_saved=saved, progress=shown)
        arrived.put_nowait(None)
        return ran

    async def stream(first: str | None) -> AsyncIterator[str]:
        session_id = first
        while session_id is not None:
            yield session_id
            session_id = await arrived.get()

    async def judge(shown: Progress) -> JudgeResult:
        first = await arrived.get()  # a session saved, or none to run: the run is recorded
        return await judging(stored=stream(first), progress=shown)

    with _progress(console) as shown:
        both = [asyncio.ensure_future(run(shown)), asyncio.ensure_future(judge(shown))]
        try:
            ran, judged = await asyncio.gather(*both)
        finally:
            for task in both:
                task.cancel()
            await asyncio.gather(*both, return_exceptions=True)
    return ran, judged


def _share_cores(plans: Plans, config: EvalConfig) -> bool:
    """Whether judging beside the sessions would share this machine's cores with them: an
    in-process judge (local:, gguf:, hf:) and an in-process patient or therapist model.
    `evaluate` then runs the sessions first and judges after, as `run` and `judge` do: the
    same cores would do the same work either way, and judge prompts in parallel llama.cpp
    slots ran three times slower than one after another (docs/benchmarks.md), which
    sessions in the other slots would bring back (the demo is such a run)."""
    assert plans.run is not None and plans.judge is not None
    files = config.models_file
    if not any(resolve_spec(spec, files).in_process for spec in plans.judge.judges):
        return False
    models = [resolve_spec(plans.run.patient_model, files)]
    for spec in plans.run.therapists:  # built and dropped, as `config.check()` does
        _, bases = load_therapist(spec, models_file=files, prompt=plans.run.therapist_prompt)
        models += [base.config for base in bases]
    return any(model.in_process for model in models)


async def evaluate(config: EvalConfig, *, console: Console | None = None) -> EvalResult:
    """Run the config's sessions, judge them and summarise, resumably (a config without a
    judge section only runs sessions; one without a run section judges the stored run).
    With both, each session is judged as soon as it is stored (`_pipelined`), the
    sessions under `concurrency` and the judging under `judge_concurrency`, unless the
    judge and the sessions would share this machine's cores (`_share_cores`).

    Every pre-flight check (`config.check()`) comes first, so a bad spec, prompt file,
    selector or output path fails before the store or the cache is opened. The resolved
    config is stored with a new run. The summary covers the config's judges only (a run
    judged before by others keeps their scores apart); it is written to `config.output`
    when one is given.
    """
    plans = config.check()
    shard = Shard.parse(config.shard) if config.shard is not None else None
    store = RunStore(config.store)
    cache = config.response_cache()
    result = EvalResult(config=config, run_id=plans.run_id, store=store.path)

    def sessions(**pipeline: Any) -> Awaitable[RunResult]:
        assert plans.run is not None
        return run_plan(
            plans.run,
            plans.profiles,
            store,
            cache=cache,
            concurrency=config.concurrency,
            models_file=config.models_file,
            console=console,
            provenance={"eval_config": config.resolved()},
            shard=shard,
            **pipeline,
        )

    def judging(**pipeline: Any) -> Awaitable[JudgeResult]:
        assert plans.judge is not None
        return judge_run(
            store,
            plans.run_id,
            plans.judge,
            cache=cache,
            models_file=config.models_file,
            # long judge prompts on an in-process model: set it to 1 on a small CPU
            concurrency=config.judge_concurrency or config.concurrency,
            console=console,
            shard=shard,
            **pipeline,
        )

    try:
        if plans.run is not None and plans.judge is not None and not _share_cores(plans, config):
            result.run, result.judging = await _pipelined(sessions, judging, console)
        else:
            if plans.run is not None:
                result.run = await sessions()
            if plans.judge is not None:
                result.judging = await judging()
        if result.judging is not None:
            # the judges of this config, by name, and no others: scores an earlier judging
            # left in the run stay apart (a panel of them all is an explicit choice:
            # `summarise` without judges; `report` and `runs export` without --judge). With
            # no session to judge, these judges scored nothing and the summary is empty.
            scored = {spec for spec, *_ in result.judging.judges} if result.judging.units else ()
            result.summary = summarise(store, plans.run_id, config.aggregation, judges=scored)
            result.embedded_judge = bool(result.summary.embedded_judges)
            if config.output is not None:
                result.summary.write_json(config.output)
    finally:
        store.close()
    return result
