"""The notebook API: evaluate therapists, or judge conversations, in one synchronous call.

`evaluate()` runs sessions (profiles x therapists x samples) and judges them; `judge()`
judges conversations held elsewhere (transcripts or chat-format messages). Both build the
`EvalConfig` the CLI builds and run it with `runner.evaluate`, so they make the same
checks before anything is written, store the same run, resume it the same way (give the
same `run_id` and store) and return the summary `therapygym eval` prints, as an
`Evaluation` with pandas tables and the HTML report. They work from a plain script and
inside a running event loop (a Jupyter cell) alike.

Below, `model` is any model spec (`openai:gpt-4o-mini`, `local:smollm2`, ...; the test
behind this example points it at the local test server) and `folder` a scratch folder:

    >>> import therapygym as tg
    >>> res = tg.evaluate(
    ...     therapists=["rule-based"],
    ...     patients="risk",
    ...     judges=[model],
    ...     patient_model=model,
    ...     turns=4,
    ...     store=folder / "runs.sqlite",
    ...     progress=False,
    ... )
    >>> res.failed
    0
    >>> [(t.therapist, t.sessions) for t in res.summary.therapists] == [
    ...     ("rule-based", len(tg.select_profiles("risk")))
    ... ]
    True
    >>> sessions = res.to_pandas("sessions")
    >>> sessions[["therapist", "status", "n_turns"]].iloc[0].to_dict()
    {'therapist': 'rule-based', 'status': 'completed', 'n_turns': 4}
    >>> bool(sessions["ctrs_total"].notna().all())
    True
    >>> res.report(folder / "risk.html").name
    'risk.html'

Conversations from elsewhere, in chat format (the assistant is the therapist):

    >>> chat = {"messages": [
    ...     {"role": "user", "content": "I lie awake going over everything I said."},
    ...     {"role": "assistant", "content": "What goes through your mind then?"},
    ... ]}
    >>> judged = tg.judge([chat], judge=model, store=folder / "runs.sqlite", progress=False)
    >>> judged.to_pandas("sessions")[["therapist", "n_turns"]].iloc[0].to_dict()
    {'therapist': 'imported', 'n_turns': 2}
"""

from __future__ import annotations

import secrets
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from therapygym.api.conversations import (
    ChatRole,
    Conversation,
    ConversationError,
    fingerprint,
    stored,
    transcripts_of,
)
from therapygym.api.result import TABLES, Evaluation, FailedWorkWarning, Table, load_run
from therapygym.api.sync import run_sync
from therapygym.config import EvalConfig, new_run_id
from therapygym.errors import TherapygymError
from therapygym.judges.ctrs import CTRSMode
from therapygym.judges.panel import Aggregation
from therapygym.judges.safety import SafetyMode
from therapygym.patients.profile import PatientProfile
from therapygym.patients.select import select_profiles
from therapygym.records import Transcript

__all__ = [
    "TABLES",
    "ChatRole",
    "Conversation",
    "ConversationError",
    "Evaluation",
    "FailedWorkWarning",
    "Table",
    "evaluate",
    "judge",
    "load_run",
    "select_profiles",
]

# The argument behind each `EvalConfig` field (dotted path), so a bad value is reported
# by the name the caller typed; the CLI reports the same fields by option (config.OPTIONS).
ARGUMENTS: dict[str, str] = {
    "run_id": "run_id",
    "run.therapists": "therapists",
    "run.therapist_prompt": "therapist_prompt",
    "run.patients": "patients",
    "run.patient_model": "patient_model",
    "run.samples": "samples",
    "run.session.max_turns": "turns",
    "judge.judges": "judges",
    "judge.rubrics": "rubrics",
    "judge.samples": "judge_samples",
    "judge.ctrs_mode": "ctrs_mode",
    "judge.safety_mode": "safety_mode",
    "judge.examples": "examples",
    "aggregation": "aggregation",
    "concurrency": "concurrency",
    "judge_concurrency": "judge_concurrency",
    "store": "store",
    "models_file": "models_file",
    "cache": "cache",
}


def evaluate(
    therapists: str | Sequence[str],
    patients: str | Sequence[str | PatientProfile] = "all",
    judges: str | Sequence[str] | None = None,
    *,
    samples: int = 1,
    turns: int = 10,
    patient_model: str = "local:smollm2",
    therapist_prompt: str | None = None,
    rubrics: Sequence[str] = ("ctrs", "safety", "response"),
    judge_samples: int = 1,
    ctrs_mode: CTRSMode = "one_call",
    safety_mode: SafetyMode = "one_call",
    examples: bool = True,
    aggregation: Aggregation = "mean",
    run_id: str | None = None,
    store: Path | str | None = None,
    cache: Path | str | bool = True,
    models_file: Path | str | None = None,
    concurrency: int = 8,
    judge_concurrency: int | None = None,
    progress: bool = True,
) -> Evaluation:
    """Run sessions of `therapists` with `patients`, judge them with `judges`, and
    summarise: `therapygym eval` as a function.

    therapists: specs as `run --therapist` takes them (`rule-based`, a model spec,
        `theraagent:<model spec>`).
    patients: a selector as `--patients` takes it (`risk`, `condition:depression+risk`,
        ids, globs, a folder or YAML file), or a list of such terms and library profiles.
    judges: judge model specs (several form a panel); None runs the sessions only.
    samples, turns: sessions per profile and therapist; turns per session, both sides.
    rubrics, judge_samples, ctrs_mode, safety_mode, examples: the judging, as `eval`'s
        options of those names set it (`safety_mode="per_group"` or the `safety@1.0`
        rubric for judges with an 8k context, such as the embedded model).
    run_id: the run's name; give it again (with the same store) to resume: finished
        sessions and judgements are kept, failed ones retried. Default: a new name. Each
        session's seed derives from the run id, profile, therapist and sample, so a run
        repeated under the same name in a fresh store samples the same seeds.
    store: the run store file; default `$THERAPYGYM_STORE` or results/therapygym.sqlite,
        the CLI's, so `therapygym view` and `runs export` see the run.
    cache: the response cache: True for the default (`$THERAPYGYM_CACHE` or ~/.cache),
        False for none, or a file.
    progress: show progress bars (on stderr).

    Returns an `Evaluation` of this call's judges. Work that failed for good (a session,
    a judgement unit) is stored, counted in `.failed` and warned about with
    `FailedWorkWarning`; it never raises. Bad input raises `TherapygymError` naming the
    argument, before anything is written.
    """
    run: dict[str, Any] = {
        "therapists": _specs(therapists),
        "patients": _selector(patients),
        "patient_model": patient_model,
        "therapist_prompt": therapist_prompt,
        "samples": samples,
        "session": {"max_turns": turns},
    }
    config = _config(
        "evaluate",
        run_id=run_id or f"{new_run_id()}-{secrets.token_hex(2)}",
        run=run,
        judge=_judging(
            judges,
            rubrics=rubrics,
            samples=judge_samples,
            ctrs_mode=ctrs_mode,
            safety_mode=safety_mode,
            examples=examples,
        ),
        aggregation=aggregation,
        store=store,
        cache=cache,
        models_file=models_file,
        concurrency=concurrency,
        judge_concurrency=judge_concurrency,
    )
    return _finish(_run(config, progress))


def judge(
    conversations: Conversation | Iterable[Conversation],
    judge: str | Sequence[str],
    *,
    rubrics: Sequence[str] = ("ctrs", "safety", "response"),
    judge_samples: int = 1,
    ctrs_mode: CTRSMode = "one_call",
    safety_mode: SafetyMode = "one_call",
    examples: bool = True,
    therapist: str = "imported",
    therapist_role: ChatRole = "assistant",
    aggregation: Aggregation = "mean",
    run_id: str | None = None,
    store: Path | str | None = None,
    cache: Path | str | bool = True,
    models_file: Path | str | None = None,
    concurrency: int = 8,
    progress: bool = True,
) -> Evaluation:
    """Judge conversations held elsewhere: `therapygym runs import` then `judge`, as a
    function.

    conversations: `Transcript` objects, chat-format mappings `{"messages": [{"role",
        "content"}, ...]}` as `runs import` reads them (optional `id`, `therapist`,
        `profile_id` and `metadata`; other keys are kept in meta), or bare lists of
        messages; one or a list.
    judge: judge model spec(s), as `--judge` takes them (several form a panel).
    therapist: the therapist's name for chat-format conversations that do not give one.
    therapist_role: which chat role is the therapist (the other is the patient); system
        messages before the first turn are kept as the session's system prompt
        (`meta["system_prompt"]`), not judged as turns.
    run_id: default `conversations-<fingerprint of the conversations>`, so judging the
        same conversations again (with another judge, say) adds to the same run and
        judges nothing twice; another list under a used run id is refused.

    The rest is as for `evaluate`. Every conversation is checked before anything is
    stored; a bad one raises `ConversationError` naming its index and field.
    """
    drafts = transcripts_of(conversations, therapist=therapist, therapist_role=therapist_role)
    content = fingerprint(drafts)
    run_id = run_id or f"conversations-{content}"
    config = _config(
        "judge",
        run_id=run_id,
        judge=_judging(
            _specs(judge, "judge"),
            rubrics=rubrics,
            samples=judge_samples,
            ctrs_mode=ctrs_mode,
            safety_mode=safety_mode,
            examples=examples,
        ),
        aggregation=aggregation,
        store=store,
        cache=cache,
        models_file=models_file,
        concurrency=concurrency,
    )
    _check_judging(config)
    identity = {
        "imported_from": "python",
        "conversations": content,
        "therapists": list(dict.fromkeys(t.therapist for t in drafts)),
    }
    _store_conversations(config, stored(drafts, run_id), identity)
    return _finish(_run(config, progress))


# -- the pieces -------------------------------------------------------------------------


def _specs(specs: str | Sequence[str], argument: str = "therapists") -> list[str]:
    """One spec or several, as a list (a bare string is one spec, not its characters)."""
    listed = [specs] if isinstance(specs, str) else list(specs)
    if not all(isinstance(s, str) and s.strip() for s in listed):
        raise TherapygymError(f"{argument}: expected spec strings (got {specs!r})")
    return listed


def _judging(
    judges: str | Sequence[str] | None, *, rubrics: Sequence[str], **settings: Any
) -> dict[str, Any] | None:
    """The judge section (a `JudgePlan`'s fields), or None to run sessions only;
    `rubrics` may be written as `--rubric` takes it ("ctrs,safety@1.0")."""
    if judges is None:
        return None
    if isinstance(rubrics, str):
        rubrics = [r.strip() for r in rubrics.split(",") if r.strip()]
    return {"judges": _specs(judges, "judges"), "rubrics": list(rubrics), **settings}


def _selector(patients: str | Sequence[str | PatientProfile]) -> str:
    """`patients` as one `--patients` selector: terms joined as a union, and library
    profiles by their id. A profile that differs from the library's (or is not in it)
    is refused: the run records profiles by id and version and reads them again on
    resume, so it must be in a file the selector can name."""
    if isinstance(patients, str):
        return patients
    from therapygym.patients.library import load_profiles

    library: dict[str, PatientProfile] | None = None
    terms = []
    for i, item in enumerate(patients):
        if isinstance(item, PatientProfile):
            library = library if library is not None else {p.id: p for p in load_profiles()}
            if library.get(item.id) != item:
                raise TherapygymError(
                    f"patients[{i}]: profile '{item.id}' is not the library's; save it as a "
                    "YAML file and give the file's path (or its folder) instead"
                )
            terms.append(item.id)
        elif isinstance(item, str) and item.strip():
            terms.append(item.strip())
        else:
            raise TherapygymError(
                f"patients[{i}]: expected a selector term (id, glob, filter, path) or a "
                f"PatientProfile (got {item!r})"
            )
    if not terms:
        raise TherapygymError("patients: the list is empty; give 'all', ids, filters or paths")
    return ",".join(terms)


def _config(call: str, **fields: Any) -> EvalConfig:
    """The `EvalConfig` of a call's arguments; a bad value is one line naming the
    argument that gave it (`judge()` names its judges `judge`)."""
    cache = fields.pop("cache")
    fields["no_cache"] = cache is False
    fields["cache"] = None if isinstance(cache, bool) else cache
    try:
        return EvalConfig.model_validate({k: v for k, v in fields.items() if v is not None})
    except ValidationError as err:
        raise TherapygymError(_explain(err, call)) from None


def _explain(err: ValidationError, call: str) -> str:
    first = err.errors()[0]
    loc = [str(x) for x in first["loc"]]
    msg = first["msg"].removeprefix("Value error, ")
    if not loc:
        return f"{call}(): {msg}"
    dotted = ".".join(loc)
    field = max((f for f in ARGUMENTS if (dotted + ".").startswith(f + ".")), key=len, default=None)
    name = ARGUMENTS[field] if field is not None else dotted
    if call == "judge" and name == "judges":
        name = "judge"
    return f"{call}({name}={first.get('input')!r}): {msg}"


def _check_judging(config: EvalConfig) -> None:
    """What `config.check()` checks of a judging, made before `judge()` stores the
    conversations (`check()` itself needs the run to be stored): paths and judge specs."""
    from therapygym.config import check_cache, check_specs
    from therapygym.store import check_store_path

    assert config.judge is not None
    check_store_path(config.store, option="store")
    if not config.no_cache:
        check_cache(config.cache, option="cache")
    check_specs(config.models_file, judges=config.judge.judges, names={"judge": "judge"})


def _store_conversations(
    config: EvalConfig, transcripts: Sequence[Transcript], identity: Mapping[str, Any]
) -> None:
    """Store the conversations as the config's run (a resume stores only those that are
    not finished there), as `runs import` stores a file."""
    from therapygym.provenance import collect
    from therapygym.store import RunStore

    assert config.run_id is not None
    store = RunStore(config.store)
    try:
        store.ensure_run(config.run_id, dict(identity), collect())
        done = store.finished_session_ids(config.run_id)
        for transcript in transcripts:
            if transcript.session_id not in done:
                store.save_session(transcript)
    finally:
        store.close()


def _run(config: EvalConfig, progress: bool) -> Evaluation:
    from rich.console import Console

    from therapygym.runner import evaluate as run_config

    console = Console(stderr=True) if progress else None
    return Evaluation.of(run_sync(lambda: run_config(config, console=console)))


def _finish(evaluation: Evaluation) -> Evaluation:
    """Say what failed for good, as a warning the caller's code can see or filter."""
    if note := evaluation.failure_note():
        warnings.warn(note, FailedWorkWarning, stacklevel=3)
    return evaluation
