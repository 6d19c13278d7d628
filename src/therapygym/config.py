"""How an evaluation is configured, and every check made before it starts.

`EvalConfig` is one evaluation as data: which sessions to run (`run`), how to judge them
(`judge`), and where things go (store, cache, models file, summary). It is written as a
YAML file (configs/eval.example.yaml), given as command-line options, or both:
`EvalConfig.from_file(path, overrides)` lets every option given override the file. A
Python caller builds the same object, and `runner.evaluate(config)` runs the same
`check()` the CLI does, so a bad spec, prompt file, selector or output path fails before
anything is opened or written, with an error that names the option (or the file and the
field) to fix.

The plans the runner executes (`RunPlan`, and `judges.plan.JudgePlan`) are what a run is:
`RunPlan` is recorded with the run and compared on resume. The checks other commands
share (probes, calibration, reports) are the functions at the end of this module.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from therapygym.artefacts import write_problem
from therapygym.errors import (
    ConfigError,
    ModelSpecError,
    TherapygymError,
    describe_validation_error,
)
from therapygym.judges.panel import Aggregation
from therapygym.judges.plan import JudgePlan
from therapygym.judges.rubric import parse_rubric_ref, rubric_by_ref
from therapygym.records import SessionConfig
from therapygym.shards import EXPECTED as SHARD_EXPECTED
from therapygym.shards import Shard, ShardError
from therapygym.yamlfile import read_yaml_mapping

if TYPE_CHECKING:
    from therapygym.models import ResponseCache
    from therapygym.patients.profile import PatientProfile

P = TypeVar("P", bound=BaseModel)

RUN_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"
AGGREGATIONS = ("mean", "median", "majority")

# The command-line option behind each field (dotted path) of `EvalConfig`: errors about a
# value given as an option name the option, and the CLI turns its options into overrides
# by this table (an option `--max-turns` is the parameter `max_turns`).
OPTIONS: dict[str, str] = {
    "run_id": "--run-id",
    "run.therapists": "--therapist",
    "run.therapist_prompt": "--therapist-prompt",
    "run.patients": "--patients",
    "run.patient_model": "--patient-model",
    "run.samples": "--samples",
    "run.session.max_turns": "--max-turns",
    "run.session.opener": "--opener",
    "run.session.temperature": "--temperature",
    "run.session.max_tokens": "--max-tokens",
    "judge.judges": "--judge",
    "judge.rubrics": "--rubric",
    "judge.samples": "--judge-samples",
    "judge.ctrs_mode": "--ctrs-mode",
    "judge.examples": "--examples",
    "judge.safety_mode": "--safety-mode",
    "aggregation": "--aggregation",
    "concurrency": "--concurrency",
    "judge_concurrency": "--judge-concurrency",
    "output": "--output",
    "store": "--store",
    "models_file": "--models-file",
    "cache": "--cache",
    "no_cache": "--no-cache",
    "shard": "--shard",
}


class RunFields(BaseModel):
    """What the sessions of a run are, as the run plan and the config file share it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    therapists: tuple[str, ...] = Field(
        min_length=1,
        description="Therapist specs: rule-based, a model spec, or theraagent:<model spec>.",
    )
    therapist_prompt: str | None = Field(
        None,
        description="System-prompt file for LLM therapists, 'none', or 'no-turn-info' (ours "
        "without the turn notes).",
    )
    patient_model: str = "local:smollm2"
    samples: int = Field(1, ge=1, le=1000)
    session: SessionConfig = SessionConfig()
    check_questions: dict[str, str] = Field(
        default_factory=dict,
        description="Questions for the check-question judge about every session of the run.",
    )


class RunPlan(RunFields):
    """What a run is: recorded with the run, and checked again on resume."""

    run_id: str = Field(min_length=1, pattern=RUN_ID_PATTERN)
    profiles: tuple[str, ...] = Field(min_length=1, description="Profile id@version.")

    def record(self) -> dict[str, Any]:
        """The run's identity as stored (concurrency and cache are not part of it; empty
        check questions are left out, so runs stored before they existed still resume).
        When an LLM therapist is told its turn (a turn-aware prompt: ours, or a template
        file), the prompt's fingerprint is part of it: sessions made with and without
        turn notes are different sessions, and a run is never resumed across the two."""
        from therapygym.therapists.prompted import resolve_prompt
        from therapygym.therapists.registry import therapist_kind

        skip = {"run_id"} | (set() if self.check_questions else {"check_questions"})
        out = self.model_dump(mode="json", exclude=skip)
        if any(therapist_kind(spec) != "rule-based" for spec in self.therapists):
            prompt = resolve_prompt(self.therapist_prompt)
            if prompt is not None and prompt.turn_aware:
                out["turn_notes"] = prompt.fingerprint()
        return out


class RunSection(RunFields):
    """The `run:` part of an evaluation config: the run plan as a user writes it, with a
    patient selector where the plan holds the profile versions it selects."""

    patients: str = Field(
        "all",
        description="Profiles: all, ids/globs, condition:X, severity:X, style:X, risk, or a "
        "path; ',' = or, '+' = and (condition:depression+severity:imminent_risk).",
    )


@dataclass
class Plans:
    """What `EvalConfig.check` produced: the run plan with the profiles it selected (when
    the config runs sessions) and the judge plan (when it judges)."""

    run_id: str
    run: RunPlan | None = None
    profiles: list[PatientProfile] = field(default_factory=list)
    judge: JudgePlan | None = None


def new_run_id() -> str:
    """The name of a run given none: the UTC time it was configured."""
    return datetime.now(UTC).strftime("run-%Y%m%d-%H%M%S")


class EvalConfig(BaseModel):
    """One evaluation: run sessions (`run`), judge them (`judge`), or both.

    Without `run` it judges the stored run `run_id`; without `judge` it only runs the
    sessions. Relative paths are taken from the working directory.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_id: str | None = Field(
        None,
        pattern=RUN_ID_PATTERN,
        description="The run; reuse it to resume. Default for a new run: run-<UTC time>.",
    )
    run: RunSection | None = None
    judge: JudgePlan | None = None
    aggregation: Aggregation = "mean"
    concurrency: int = Field(8, ge=1, le=4096, description="Sessions (or judgements) in flight.")
    judge_concurrency: int | None = Field(
        None,
        ge=1,
        le=4096,
        description="Judgements in flight, alongside the sessions: with a run section, each "
        "session is judged as soon as it is stored (default: concurrency).",
    )
    output: Path | None = Field(None, description="Summary JSON file.")
    store: Path | None = Field(None, description="Default $THERAPYGYM_STORE or results/.")
    models_file: Path | None = Field(None, description="Default $THERAPYGYM_MODELS.")
    cache: Path | None = Field(None, description="Default $THERAPYGYM_CACHE or ~/.cache.")
    no_cache: bool = False
    shard: str | None = Field(
        None,
        description="K/N: only the sessions (and their judging) whose id hashes to shard K "
        "of N, K from 0; each shard its own store, then `runs merge` (docs/scale.md).",
    )

    # where the values came from, so that errors name what to fix: the file (and which
    # fields it gave), or options (`from_file` was given them)
    _file: Path | None = PrivateAttr(None)
    _file_fields: frozenset[str] = PrivateAttr(frozenset())
    _options: bool = PrivateAttr(False)
    # what `check()` found, and for which config (`model_copy` copies private attributes),
    # so the CLI can show the selection before `evaluate` checks again, without reading
    # the profiles and building the specs twice
    _checked: tuple[str, Plans] | None = PrivateAttr(None)

    @model_validator(mode="before")
    @classmethod
    def _name_a_new_run(cls, data: Any) -> Any:
        """A config that runs sessions gets a run id now, so the resolved config (what
        `--print-config` shows and the store keeps) names the run it made. A shard gets
        none: each shard would name its own run (session ids hash the run id), so the shards
        of one run must all be given its id."""
        if isinstance(data, dict) and data.get("run") is not None and not data.get("run_id"):
            if data.get("shard") is not None:
                raise ValueError(
                    "--shard needs the run's id (--run-id, or run_id in the config file): "
                    "every shard of a run must name the same run"
                )
            return {**data, "run_id": new_run_id()}
        return data

    @field_validator("shard")
    @classmethod
    def _a_shard_spec(cls, value: str | None) -> str | None:
        """K/N, kept as `Shard` writes it (so ' 1 / 4' and '1/4' are one spec)."""
        if value is None:
            return None
        try:
            return str(Shard.parse(value))
        except ShardError:
            raise PydanticCustomError("shard", SHARD_EXPECTED) from None

    @model_validator(mode="after")
    def _something_to_do(self) -> EvalConfig:
        if self.run is None and self.judge is None:
            raise ValueError("nothing to do: give a run section, a judge section, or both")
        if self.run is None and self.run_id is None:
            raise ValueError("judging a stored run needs its run_id")
        return self

    @classmethod
    def from_file(
        cls, path: Path | str | None, overrides: Mapping[str, Any] | None = None
    ) -> EvalConfig:
        """The config of a YAML file (or none), with `overrides` (the same shape, from
        command-line options) taking precedence field by field. A bad value is reported
        by its option when an option gave it, else by the file and the field."""
        path = Path(path) if path is not None else None
        given = read_yaml_mapping(path, "eval config", ConfigError) if path is not None else {}
        options = dict(overrides or {})
        try:
            config = cls.model_validate(_merge(given, options))
        except ValidationError as err:
            raise ConfigError(_explain(err, path, options)) from None
        config._file = path
        config._file_fields = frozenset(_leaves(given) - _leaves(options))
        config._options = True
        return config

    def resolved(self) -> dict[str, Any]:
        """The whole config, defaults filled in, as plain data (what the run stores)."""
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        """`resolved()` as YAML: a file `from_file` reads back to the same config."""
        import yaml

        return yaml.safe_dump(self.resolved(), sort_keys=False, allow_unicode=True)

    def response_cache(self) -> ResponseCache | None:
        return response_cache(self.cache, self.no_cache)

    def _name(self, dotted: str) -> str:
        """How an error names a field: the file and field its value came from, else the
        option that gives it (for a config made from options), else the field."""
        if dotted in self._file_fields:
            return f"eval config {self._file}: field '{dotted}'"
        return OPTIONS[dotted] if self._options else f"field '{dotted}'"

    def _path_name(self, dotted: str) -> str:
        """How an error names a path field: as `_name`, but a Python caller's field by its
        bare name (`output /x: ...`, not `field 'output' /x: ...`)."""
        if dotted in self._file_fields or self._options:
            return self._name(dotted)
        return dotted

    def check(self) -> Plans:
        """Every pre-flight check, before anything is opened or written: the output, store
        and cache paths, the therapist prompt file, every therapist, patient-model and judge
        spec (built and dropped: no connection, no weights), the patient selector, and for
        a judging-only config the stored run. Returns the plans the checks produced, so
        nothing is read twice; a second call returns them again. Raises `TherapygymError`
        with one line naming what to fix."""
        key = self.model_dump_json()
        if self._checked is None or self._checked[0] != key:
            self._checked = (key, self._check())
        return self._checked[1]

    def _check(self) -> Plans:
        from therapygym.store import check_store_path

        assert self.run_id is not None  # validation names every run
        check_output(self.output, option=self._path_name("output"))
        check_store_path(self.store, option=self._path_name("store"))
        if not self.no_cache:
            check_cache(self.cache, option=self._path_name("cache"))
        run_id, run = self.run_id, self.run
        plans = Plans(run_id=run_id, judge=self.judge)
        check_specs(
            self.models_file,
            therapists=run.therapists if run else (),
            prompt=run.therapist_prompt if run else None,
            patient_model=run.patient_model if run else None,
            judges=self.judge.judges if self.judge else (),
            names={
                "therapist": self._name("run.therapists"),
                "patient_model": self._name("run.patient_model"),
                "judge": self._name("judge.judges"),
            },
        )
        if run is None:
            check_run_exists(self.store, run_id)
            return plans
        plans.profiles = self._profiles(run.patients)
        plans.run = RunPlan(
            run_id=run_id,
            profiles=tuple(f"{p.id}@{p.version}" for p in plans.profiles),
            **run.model_dump(exclude={"patients"}),
        )
        return plans

    def _profiles(self, selector: str) -> list[PatientProfile]:
        from therapygym.patients.select import select_profiles

        if "run.patients" not in self._file_fields:  # its errors name --patients
            return select_profiles(selector)
        try:
            return select_profiles(selector)
        except TherapygymError as err:
            raise ConfigError(f"{self._name('run.patients')}: {err}") from None


def _merge(base: Mapping[str, Any], top: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `top` laid over it, section by section (`top` wins on every leaf)."""
    merged = dict(base)
    for key, value in top.items():
        below = merged.get(key)
        if isinstance(value, Mapping) and isinstance(below, Mapping):
            merged[key] = _merge(below, value)
        elif not (isinstance(value, Mapping) and not value and below is not None):
            merged[key] = value  # (an empty section keeps what the file wrote, to be checked)
    return merged


def _leaves(data: Mapping[str, Any], prefix: str = "") -> set[str]:
    """The dotted paths of every value in `data`, and of every section holding them."""
    found = set()
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        found.add(dotted)
        if isinstance(value, Mapping):
            found |= _leaves(value, dotted + ".")
    return found


def _explain(err: ValidationError, path: Path | None, options: Mapping[str, Any]) -> str:
    """A validation error as one line: by its option when an option gave the value (as
    `run option 'opener': ...` for the run and judge plans, `--aggregation 'max': ...` for
    the rest), else by the file and field; a missing required value by its option."""
    first = err.errors()[0]
    loc = [str(x) for x in first["loc"]]
    dotted = ".".join(loc)
    given = _leaves(options)
    option = next((d for d in given if d in OPTIONS and (dotted + ".").startswith(d + ".")), None)
    if option is not None:
        section, *rest = loc
        if section in ("run", "judge", "run_id"):
            what = "judge" if section == "judge" else "run"
            name = ".".join(x for x in rest if x != "session") or section
            return f"{what} option '{name}': {first['msg']}"
        return f"{OPTIONS[option]} '{first.get('input')}': {first['msg']}"
    if path is None and first["type"] in ("missing", "too_short") and dotted in OPTIONS:
        return f"missing option '{OPTIONS[dotted]}' (or field '{dotted}' in a config file)"
    where = f"eval config {path}" if path else "eval config"
    if not loc:  # the config as a whole (nothing to do, no run to judge)
        return f"{where}: {first['msg'].removeprefix('Value error, ')}"
    return describe_validation_error(err, where)


# -- checks that other commands share ------------------------------------------------------


def validated(build: Callable[[], P], what: str) -> P:
    """Build a pydantic plan from options, turning its first validation error into one
    line naming the option (`probe option 'run_id': ...`)."""
    try:
        return build()
    except ValidationError as e:
        first = e.errors()[0]
        name = ".".join(str(x) for x in first["loc"])
        raise TherapygymError(f"{what} option '{name}': {first['msg']}") from None


def check_prompt(prompt: str | None) -> None:
    """Read a therapist prompt file now (its error names the file), unless it is 'none'."""
    from therapygym.therapists import NO_PROMPT
    from therapygym.therapists.prompted import read_prompt

    if prompt is not None and prompt != NO_PROMPT:
        read_prompt(prompt)


def check_specs(
    models_file: Path | None,
    *,
    therapists: Sequence[str] = (),
    prompt: str | None = None,
    patient_model: str | None = None,
    judges: Sequence[str] = (),
    names: Mapping[str, str] | None = None,
) -> None:
    """Build, and drop, every therapist and model a command names, before it opens the
    store or the cache: a bad spec, prompt file, chatbot file or models file then fails
    with nothing written, and the error names the option (or, by `names`, the file and
    field) it came from. Building connects to nothing and loads no weights."""
    from therapygym.models import load_model
    from therapygym.therapists import load_therapist

    check_prompt(prompt)
    named = {
        "therapist": "--therapist",
        "patient_model": "--patient-model",
        "judge": "--judge",
        **(names or {}),
    }
    checks = [
        *(("therapist", spec) for spec in dict.fromkeys(therapists)),
        *((("patient_model", patient_model),) if patient_model else ()),
        *(("judge", spec) for spec in dict.fromkeys(judges)),
    ]
    for role, spec in checks:
        try:
            if role == "therapist":
                load_therapist(spec, models_file=models_file, prompt=prompt)
            else:
                load_model(spec, models_file=models_file)
        except TherapygymError as e:
            raise TherapygymError(f"{named[role]}: {e}") from None


def judge_labels(specs: Sequence[str] | None, models_file: Path | None = None) -> list[str] | None:
    """The labels the store keeps for `--judge` filters (None: no filter). A filter may be
    the spec a judge was run with or the label a summary printed; a value that is no spec
    is kept as written, so the store's "no scores by judge ..." error lists the judges the
    run has."""
    from therapygym.models.spec import resolve_spec

    if not specs:
        return None
    labels = []
    for spec in specs:
        try:
            labels.append(resolve_spec(spec, models_file).label)
        except ModelSpecError:
            labels.append(spec)
    return labels


def check_output(path: Path | None, *, folder: bool = False, option: str = "output") -> None:
    """Refuse, before any work is done, an output path that cannot be written: a folder
    where a file goes (or the reverse), a path under a file, or one in a folder where
    nothing can be created (no permission, a read-only file system, /proc). The error
    names `option` (the option or field that gave the path), the path and the problem,
    so a mistake costs nothing instead of the run it would otherwise end."""
    if path is not None and (problem := write_problem(path, folder=folder)):
        raise TherapygymError(f"{option} {path}: {problem}")


def check_cache(path: Path | None, *, option: str = "--cache") -> None:
    """`check_output` for the response cache a command will open (None: the default
    cache, `$THERAPYGYM_CACHE` or ~/.cache), before it creates the file or its folder.
    (The store's own is `store.check_store_path`: `runs import` needs it below config.)"""
    from therapygym.models.cache import default_cache_path

    given = path is not None
    name = option if given else f"the default {option}"
    check_output(path if given else default_cache_path(), option=name)


def check_aggregation(aggregation: str) -> None:
    if aggregation not in AGGREGATIONS:
        raise TherapygymError(f"--aggregation '{aggregation}': expected mean, median or majority")


def check_calibration(judges: Sequence[str] | None, *, humans_only: bool, recalibrate: str) -> None:
    """`calibrate` compares judges with experts, or the experts alone: one or the other."""
    if humans_only == bool(judges):
        raise TherapygymError("give --judge SPEC, or --humans-only for the experts alone")
    if recalibrate not in ("isotonic", "linear", "none"):
        raise TherapygymError(f"--recalibrate '{recalibrate}': expected isotonic, linear or none")


def calibration_plan(
    kinds: Sequence[str],
    judges: Sequence[str],
    *,
    nothing_to_judge: str,
    samples: int,
    ctrs_mode: str,
    rationale_chars: int,
    models_file: Path | None,
    versions: Sequence[str] = (),
    safety_mode: str = "one_call",
) -> JudgePlan | None:
    """The judging plan of a calibration: the rubrics for which the bench's experts gave
    ratings (`kinds`), every judge spec checked; None for the experts alone. With judges
    but no kinds, the error is `nothing_to_judge` (the bench says why it has nothing).
    `versions` (`safety@1.0`) pins the version a kind is judged with, so two calibrations
    of one bench can compare rubric versions; a kind the bench does not need is refused."""
    if not judges:
        return None
    if not kinds:
        raise TherapygymError(nothing_to_judge)
    pinned = check_rubric_versions(versions, kinds)
    plan = validated(
        lambda: JudgePlan(
            judges=tuple(judges),
            rubrics=tuple(pinned.get(kind, kind) for kind in kinds),
            samples=samples,
            ctrs_mode=ctrs_mode,  # type: ignore[arg-type]
            safety_mode=safety_mode,  # type: ignore[arg-type]
            rationale_chars=rationale_chars,
        ),
        "judge",
    )
    check_specs(models_file, judges=judges)
    return plan


def check_rubric_versions(refs: Sequence[str], kinds: Sequence[str]) -> dict[str, str]:
    """`--rubric` refs for a calibration, by kind: each must name a kind the bench's
    experts rated (judging another would compare nothing) and a version that exists."""
    pinned: dict[str, str] = {}
    for ref in refs:
        try:
            kind, _ = parse_rubric_ref(ref)
            rubric_by_ref(ref)
        except (ValueError, ConfigError) as err:
            raise TherapygymError(f"--rubric: {err}") from None
        if kind not in kinds:
            raise TherapygymError(
                f"--rubric '{ref}': the bench's experts rated no {kind}; it needs "
                f"{', '.join(kinds)}"
            )
        if kind in pinned:
            raise TherapygymError(
                f"--rubric: {kind} is given twice; calibrate one version at a time"
            )
        pinned[kind] = ref.strip()
    return pinned


def check_run_exists(store: Path | None, run_id: str) -> None:
    """Fail, with nothing created, when the store or the run in it is not there (for
    commands that then open the store to write to it)."""
    from therapygym.store import RunStore

    run_store = RunStore(store, read_only=True)
    try:
        run_store.run(run_id)
    finally:
        run_store.close()


def response_cache(path: Path | None, disabled: bool = False) -> ResponseCache | None:
    """The response cache at `path` (default location when None), or None to neither
    read nor write one."""
    from therapygym.models import ResponseCache

    return None if disabled else ResponseCache(path)
