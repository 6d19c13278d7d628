"""The evaluation config: file and options, errors that name what to fix, the checks a
Python caller gets before any work, and the resolved config stored with the run."""

from __future__ import annotations

import asyncio
import platform
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from clirun import cli
from judges.scripted import judge_replier

from therapygym.cli.app import app
from therapygym.config import OPTIONS, EvalConfig, RunPlan, RunSection
from therapygym.demo import demo_config
from therapygym.errors import TherapygymError
from therapygym.judges.plan import JudgePlan
from therapygym.models.spec import is_embedded
from therapygym.runner import evaluate
from therapygym.store import RunStore
from therapygym.therapists.prompted import resolve_prompt

EXAMPLE = Path(__file__).resolve().parents[1] / "configs" / "eval.example.yaml"


def write(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


BASE = {
    "run_id": "from-file",
    "run": {"therapists": ["rule-based"], "patients": "dep-01-maya", "samples": 3,
            "session": {"max_turns": 4, "opener": "therapist"}},
    "judge": {"judges": ["local:smollm2"], "rubrics": ["ctrs"]},
    "concurrency": 2,
}  # fmt: skip


def test_options_override_the_file_field_by_field(tmp_path: Path) -> None:
    path = write(tmp_path / "eval.yaml", BASE)
    config = EvalConfig.from_file(
        path, {"run": {"samples": 2, "session": {"max_turns": 6}}, "judge": {}, "concurrency": 9}
    )
    assert config.run is not None and config.judge is not None
    assert (config.run.samples, config.run.session.max_turns) == (2, 6)  # options win
    assert config.run.session.opener == "therapist"  # the file's value beside an override
    assert config.run.patients == "dep-01-maya" and config.judge.rubrics == ("ctrs",)
    assert config.concurrency == 9 and config.run_id == "from-file"
    assert config.run.session.temperature == 0.7  # neither: the default


def test_the_resolved_config_reads_back_to_itself(tmp_path: Path) -> None:
    config = EvalConfig.from_file(write(tmp_path / "eval.yaml", BASE))
    printed = write(tmp_path / "resolved.yaml", yaml.safe_load(config.to_yaml()))
    assert EvalConfig.from_file(printed).resolved() == config.resolved()


def test_the_example_config_loads_and_passes_its_checks() -> None:
    config = EvalConfig.from_file(EXAMPLE)
    assert config.run is not None and config.judge is not None and config.run_id == "example"
    plans = config.check()  # builds every spec it names: no connection, no weights
    assert plans.run is not None and len(plans.profiles) == 2


def test_print_config_prints_the_resolved_yaml_and_runs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    path = write(tmp_path / "eval.yaml", BASE)
    code, out, err = cli("eval", "--config", str(path), "--samples", "5", "--print-config")
    assert code == 0, err
    printed = yaml.safe_load(out)
    assert printed["run"]["samples"] == 5 and printed["run"]["session"]["max_turns"] == 4
    assert printed == EvalConfig.from_file(path, {"run": {"samples": 5}}).resolved()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval.yaml"]  # no store, no cache


def test_options_alone_make_a_config_with_a_run_id() -> None:
    code, out, err = cli("eval", "--therapist", "rule-based", "--judge", "x", "--print-config")
    assert code == 0, err
    printed = yaml.safe_load(out)
    assert printed["run_id"].startswith("run-") and printed["judge"]["judges"] == ["x"]


@pytest.mark.parametrize(
    ("data", "args", "fragments"),
    [
        ({**BASE, "run": {**BASE["run"], "sesion": {}}}, (), ["unknown field 'run.sesion'"]),
        ({**BASE, "concurrency": "many"}, (), ["field 'concurrency'", "(got 'many')"]),
        ({**BASE, "aggregation": "max"}, (), ["field 'aggregation'"]),
        ({**BASE, "run": {**BASE["run"], "therapists": ["gpt5"]}}, (),
         ["field 'run.therapists': unknown model spec 'gpt5'"]),
        ({**BASE, "run": {**BASE["run"], "patient_model": "gpt5"}}, (),
         ["field 'run.patient_model': unknown model spec 'gpt5'"]),
        ({**BASE, "judge": {"judges": ["gpt5"]}}, (), ["field 'judge.judges': unknown model spec"]),
        ({**BASE, "run": {**BASE["run"], "patients": "nobody"}}, (),
         ["field 'run.patients': --patients term 'nobody' matches no profile"]),
        ({k: v for k, v in BASE.items() if k != "judge"}, (), ["field 'judge.judges' is missing"]),
    ],
)  # fmt: skip
def test_errors_name_the_file_and_the_field(
    tmp_path: Path, data: dict[str, Any], args: tuple[str, ...], fragments: list[str]
) -> None:
    path = write(tmp_path / "eval.yaml", data)
    code, _, err = cli("eval", "--config", str(path), "--store", str(tmp_path / "s.sqlite"), *args)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert f"error: eval config {path}: " in err
    for fragment in fragments:
        assert fragment in err
    assert not (tmp_path / "s.sqlite").exists()


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--therapist", "gpt6"), "error: --therapist: unknown model spec 'gpt6'"),
        (("--opener", "both"), "error: run option 'opener': Input should be"),
        (("--aggregation", "max"), "error: --aggregation 'max'"),
    ],
)
def test_an_option_that_overrides_the_file_is_named_as_the_option(
    tmp_path: Path, args: tuple[str, ...], fragment: str
) -> None:
    path = write(tmp_path / "eval.yaml", BASE)
    code, _, err = cli("eval", "--config", str(path), "--store", str(tmp_path / "s.sqlite"), *args)
    assert code == 2 and fragment in err, err


def test_eval_without_a_file_names_the_missing_options() -> None:
    code, _, err = cli("eval", "--judge", "x")
    assert code == 2 and "missing option '--therapist'" in err
    code, _, err = cli("eval", "--therapist", "rule-based")
    assert code == 2 and "missing option '--judge'" in err


def test_a_missing_config_file_is_one_line(tmp_path: Path) -> None:
    code, _, err = cli("eval", "--config", str(tmp_path / "nope.yaml"))
    assert code == 2 and f"eval config {tmp_path / 'nope.yaml'}: file not found" in err


def config_with(tmp_path: Path, **fields: Any) -> EvalConfig:
    run = RunSection(therapists=("rule-based",), patients="dep-01-maya")
    judge = JudgePlan(judges=("local:smollm2",))
    return EvalConfig(**{"run": run, "judge": judge, "store": tmp_path / "s.sqlite", **fields})


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"judge": JudgePlan(judges=("gpt5",))}, "field 'judge.judges': unknown model spec"),
        (
            {"run": RunSection(therapists=("rule-based",), patient_model="gpt5")},
            "field 'run.patient_model': unknown model spec 'gpt5'",
        ),
        (
            {"run": RunSection(therapists=("openai:m",), therapist_prompt="/nope/prompt.md")},
            "therapist prompt file /nope/prompt.md: file not found",
        ),
        ({"output": Path("/")}, "output /: is a directory"),
        ({"run": None, "run_id": "absent"}, "no store at"),
    ],
)
def test_a_python_caller_gets_every_check_before_any_work(
    tmp_path: Path, fields: dict[str, Any], fragment: str
) -> None:
    config = config_with(tmp_path, **fields)
    with pytest.raises(TherapygymError) as info:
        asyncio.run(evaluate(config))
    assert fragment in str(info.value) and "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []  # no store, no cache, no output


def test_a_config_needs_something_to_do() -> None:
    with pytest.raises(ValueError, match="nothing to do"):
        EvalConfig()
    with pytest.raises(ValueError, match="needs its run_id"):
        EvalConfig(judge=JudgePlan(judges=("x",)))


def test_help_shows_the_defaults_that_apply() -> None:
    """The defaults --help shows for run, judge and eval are EvalConfig's."""
    defaults = EvalConfig(
        run=RunSection(therapists=("x",)), judge=JudgePlan(judges=("x",)), run_id="r"
    ).resolved()
    command = typer.main.get_command(app)
    for name in ("run", "judge", "eval"):
        params = {p.name: p for p in command.commands[name].params}  # type: ignore[attr-defined]
        for field, option in OPTIONS.items():
            param = params.get(option.removeprefix("--").replace("-", "_"))
            if param is None or param.required or field in ("run_id", "run.therapists"):
                continue
            value: Any = defaults
            for key in field.split("."):
                value = value[key]
            shown = ",".join(value) if field == "judge.rubrics" else value
            assert param.default == (None if field == "judge.judges" else shown), (name, field)


def test_demo_runs_resume_runs_stored_before_the_config(tmp_path: Path) -> None:
    """The demo's run record is what 0.1.0 stored, with the turn notes its LLM therapist
    gets since issue 18 and the specs naming their llama.cpp slots since issue 22 (so its
    runs resume, and the earlier runs, "demo" without notes and "demo-2" without slots,
    are never resumed as this one: it is "demo-3")."""
    plans = demo_config(store=tmp_path / "s.sqlite").check()
    assert plans.run is not None and plans.run_id == "demo-3"
    record = plans.run.record()
    assert record["therapists"] == ["local:smollm2?slots=8", "rule-based"]
    assert record["patient_model"] == "local:smollm2?slots=8"
    assert [p.split("@")[0] for p in record["profiles"]] == ["dep-02-emeka", "gad-01-priya"]
    assert record["session"] == {"max_turns": 8, "opener": "patient", "max_tokens": 80,
                                 "temperature": 0.7}  # fmt: skip
    assert set(record) == {"therapists", "therapist_prompt", "patient_model", "profiles",
                           "samples", "session", "turn_notes"}  # fmt: skip
    assert record["turn_notes"] == resolve_prompt(None).fingerprint()  # type: ignore[union-attr]
    plain = RunPlan(**{**plans.run.model_dump(), "therapist_prompt": "no-turn-info"}).record()
    assert "turn_notes" not in plain  # ours without notes: the 0.1.0 record
    rule = RunPlan(**{**plans.run.model_dump(), "therapists": ("rule-based",)}).record()
    assert "turn_notes" not in rule  # no LLM therapist is told anything


def test_the_embedded_judge_is_one_predicate(tmp_path: Path) -> None:
    models = tmp_path / "models.yaml"
    models.write_text("models:\n  tiny: {backend: local, model: smollm2}\n  big: {backend: "
                      "openai, model: m, base_url: 'http://127.0.0.1:9/v1'}\n")  # fmt: skip
    assert is_embedded("local:smollm2") and is_embedded("tiny", models)
    assert not is_embedded("big", models) and not is_embedded("openai:m@http://x/v1")
    assert not is_embedded("rule-based")


def test_the_run_stores_its_resolved_config_and_runs_show_prints_it(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    server = openai_server(judge_replier(score=4, verdict="no"))
    spec = server_spec(server)
    store = tmp_path / "s.sqlite"
    path = write(
        tmp_path / "eval.yaml",
        {**BASE, "run": {**BASE["run"], "therapists": [spec], "patient_model": spec,
                         "samples": 1},
         "judge": {"judges": [spec], "rubrics": ["ctrs", "safety"]}},
    )  # fmt: skip
    code, out, err = cli("eval", "--config", str(path), "--store", str(store), "--no-cache")
    assert code == 0, err
    assert "Summary of from-file" in out
    assert "carry no clinical meaning" not in out  # no embedded judge scored this run
    resolved = EvalConfig.from_file(path, {"store": str(store), "no_cache": True}).resolved()
    info = RunStore(store, read_only=True).run("from-file")
    assert info.provenance["eval_config"] == resolved
    assert set(info.provenance["rubrics"]) and info.provenance["therapygym"]

    code, out, err = cli("runs", "show", "from-file", "--store", str(store))
    assert code == 0, err
    assert "Provenance of from-file" in out and "resolved config" in out
    for fingerprint in info.provenance["rubrics"].values():
        assert fingerprint in out
    assert "max_turns: 4" in out and f"therapygym {info.provenance['therapygym']}" not in out
    rows = {line.strip("│ ").split()[0]: line for line in out.splitlines() if "│" in line}
    for key in ("therapygym", "revision", "python", "platform", "created_at"):
        value = info.provenance[key]
        assert key in rows and str(value or "—")[:20] in rows[key], (key, out)
    assert info.provenance["python"] == platform.python_version()

    # the same run with another session setting is refused, as a resume always was
    code, _, err = cli("eval", "--config", str(path), "--store", str(store), "--max-turns", "6")
    assert code == 2 and "different" in err
