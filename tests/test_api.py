"""The notebook API (`therapygym.api`): `evaluate`, `judge` and `load_run` against the local
test server, checked against what the CLI writes for the same run."""

from __future__ import annotations

import asyncio
import doctest
import inspect
import json
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from clirun import cli
from judges.scripted import conversation_replier, judge_replier

import therapygym as tg
import therapygym.api
from therapygym.api import ConversationError, FailedWorkWarning
from therapygym.api.sync import run_sync
from therapygym.config import EvalConfig, RunFields
from therapygym.errors import TherapygymError
from therapygym.judges.plan import JudgePlan
from therapygym.patients.library import load_profiles
from therapygym.records import SessionConfig

PATIENTS = "dep-01-maya,gad-01-priya"  # two profiles: a risk cue and none


@pytest.fixture
def model(openai_server: Any, server_spec: Any) -> str:
    """One spec for patient and judge: judge JSON for judge calls, text for the rest."""
    return server_spec(openai_server(conversation_replier()))


@pytest.fixture
def evaluated(model: str, tmp_path: Path) -> tg.Evaluation:
    return tg.evaluate(
        therapists=["rule-based"],
        patients=PATIENTS,
        judges=[model],
        patient_model=model,
        samples=2,
        turns=4,
        run_id="nb",
        store=tmp_path / "runs.sqlite",
        progress=False,
    )


def test_the_module_example_runs(model: str, tmp_path: Path) -> None:
    found = doctest.testmod(therapygym.api, extraglobs={"model": model, "folder": tmp_path})
    assert found.attempted >= 10
    assert found.failed == 0


def test_import_is_light_and_lists_the_api() -> None:
    """`import therapygym` (every CLI start) imports neither the API nor pandas."""
    code = (
        "import sys, therapygym as tg\n"
        "heavy = {'therapygym.api', 'therapygym.runner', 'pandas'} & set(sys.modules)\n"
        "assert not heavy, heavy\n"
        "assert {'evaluate', 'judge', 'load_run', 'Evaluation'} <= set(dir(tg)), dir(tg)\n"
        "assert tg.evaluate.__module__ == 'therapygym.api'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with pytest.raises(AttributeError, match="no attribute 'evaluat'"):
        tg.evaluat  # noqa: B018


def test_the_defaults_are_the_configs() -> None:
    """A default written in a signature is the one `EvalConfig` applies (as for the CLI)."""
    run, session, plan = RunFields.model_fields, SessionConfig.model_fields, JudgePlan.model_fields
    config = EvalConfig.model_fields
    expected = {
        "samples": run["samples"].default,
        "turns": session["max_turns"].default,
        "patient_model": run["patient_model"].default,
        "therapist_prompt": run["therapist_prompt"].default,
        "rubrics": plan["rubrics"].default,
        "judge_samples": plan["samples"].default,
        "ctrs_mode": plan["ctrs_mode"].default,
        "safety_mode": plan["safety_mode"].default,
        "examples": plan["examples"].default,
        "aggregation": config["aggregation"].default,
        "concurrency": config["concurrency"].default,
        "judge_concurrency": config["judge_concurrency"].default,
    }
    params = inspect.signature(tg.evaluate).parameters
    assert {name: params[name].default for name in expected} == expected
    judge_params = inspect.signature(tg.judge).parameters
    for name in ("rubrics", "judge_samples", "safety_mode", "aggregation", "concurrency"):
        assert judge_params[name].default == expected[name]


def test_evaluate_gives_the_numbers_the_cli_exports(
    evaluated: tg.Evaluation, tmp_path: Path
) -> None:
    res = evaluated
    assert res.failed == 0 and res.errors == ()
    assert [(t.therapist, t.sessions) for t in res.summary.therapists] == [("rule-based", 4)]
    sessions = res.to_pandas("sessions")
    out = tmp_path / "sessions.jsonl"
    store = str(res.store_path)
    done = cli("runs", "export", "nb", "-o", str(out), "--content", "sessions", "--store", store)
    assert done.code == 0, done.stderr
    exported = pd.DataFrame([json.loads(line) for line in out.read_text().splitlines()])
    pd.testing.assert_frame_equal(sessions, exported)
    assert sessions["ctrs_total"].notna().all() and len(sessions) == 4

    scores_csv = tmp_path / "scores.csv"
    args = ("runs", "export", "nb", "-o", str(scores_csv), "--format", "csv")
    assert cli(*args, "--content", "scores", "--store", store).code == 0
    scores = pd.read_csv(scores_csv)
    items, labels = res.to_pandas("items"), res.to_pandas("labels")
    assert len(res.to_pandas("scores")) == len(scores)
    assert set(items["rubric_id"]) == {"ctrs"} and set(labels["rubric_id"]) == {"safety"}
    assert len(items) == (scores["rubric_id"] == "ctrs").sum()
    assert items["score"].sum() == scores.loc[scores["rubric_id"] == "ctrs", "score"].sum()
    assert labels["verdict"].notna().all()
    turns = res.to_pandas("turns")
    assert len(turns) == sessions["n_turns"].sum()


def test_report_summary_and_notebook_display(
    evaluated: tg.Evaluation, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = evaluated.report(tmp_path / "out" / "nb.html")
    assert path == tmp_path / "out" / "nb.html"
    assert "rule-based" in path.read_text()
    evaluated.print_summary()
    assert "Summary of nb" in capsys.readouterr().out
    shown = evaluated._repr_html_()
    assert "<table>" in shown and "rule-based" in shown and "Failed" not in shown
    assert "run_id='nb'" in repr(evaluated)
    with pytest.raises(TherapygymError, match="expected one of sessions, items"):
        evaluated.to_pandas("runs")  # type: ignore[arg-type]
    with pytest.raises(TherapygymError, match=r"report /proc/x\.html"):
        evaluated.report("/proc/x.html")


def test_load_run_reads_the_same_run(evaluated: tg.Evaluation) -> None:
    loaded = tg.load_run("nb", store=evaluated.store_path)
    assert loaded.summary == evaluated.summary
    assert loaded.failed == 0
    pd.testing.assert_frame_equal(loaded.to_pandas("sessions"), evaluated.to_pandas("sessions"))


def test_evaluate_resumes_a_run(evaluated: tg.Evaluation, model: str) -> None:
    """The same call again does no work: the store holds every session and judgement."""
    again = tg.evaluate(
        therapists=["rule-based"],
        patients=PATIENTS,
        judges=[model],
        patient_model=model,
        samples=2,
        turns=4,
        run_id="nb",
        store=evaluated.store_path,
        progress=False,
    )
    assert again.usage is not None and not again.usage.roles  # no model was called
    assert again.summary == evaluated.summary


async def test_evaluate_works_inside_a_running_loop(model: str, tmp_path: Path) -> None:
    """A Jupyter cell runs in an event loop, where `asyncio.run` refuses to start: the sync
    call runs its work on a loop of its own."""
    asyncio.get_running_loop()
    res = tg.evaluate(
        "rule-based",
        "dep-01-maya",
        model,
        patient_model=model,
        turns=2,
        store=tmp_path / "runs.sqlite",
        progress=False,
    )
    assert res.failed == 0 and len(res.summary.sessions) == 1


async def test_an_interrupt_cancels_the_work_in_the_worker_loop() -> None:
    """Ctrl-C in a notebook while the worker thread runs: the coroutine is cancelled in its
    own loop (so the runner can say what it saved and close its models), then the
    interrupt reaches the caller."""
    seen: list[str] = []

    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    main = threading.main_thread().ident
    assert main is not None and threading.get_ident() == main
    # as in a Jupyter kernel, SIGINT raises KeyboardInterrupt (the test loop's runner
    # would instead cancel the test's own task)
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        threading.Timer(0.2, signal.pthread_kill, (main, signal.SIGINT)).start()
        with pytest.raises(KeyboardInterrupt):
            run_sync(slow)
    finally:
        signal.signal(signal.SIGINT, before)
    assert seen == ["cancelled"]


def test_judge_takes_chat_format_conversations(
    openai_server: Any, server_spec: Any, tmp_path: Path
) -> None:
    server = openai_server(judge_replier(score=5))
    judge = server_spec(server)
    conversations = [
        {
            "messages": [
                {"role": "system", "content": "You are a supportive CBT coach."},
                {"role": "user", "content": "Work has been too much lately."},
                {"role": "assistant", "content": "What part of it weighs on you most?"},
                {"role": "user", "content": [{"type": "text", "text": "The deadlines."}]},
                {"role": "assistant", "content": "Let us look at one deadline together."},
            ],
            "therapist": "coach-v2",
            "source": "export-7",
        },
        [
            {"role": "user", "content": "I keep avoiding my friends."},
            {"role": "assistant", "content": "What do you expect would happen if you went?"},
        ],
    ]
    store = tmp_path / "runs.sqlite"
    res = tg.judge(conversations, judge=judge, store=store, progress=False)
    assert res.failed == 0 and res.run_id.startswith("conversations-")
    sessions = res.to_pandas("sessions")
    assert sessions[["therapist", "n_turns"]].values.tolist() == [["coach-v2", 4], ["imported", 2]]
    assert sessions["ctrs_total"].notna().all()
    first = res.transcripts()[0]
    assert first.meta == {
        "metadata": {"source": "export-7"},
        "system_prompt": "You are a supportive CBT coach.",
    }
    assert [t.speaker for t in first.turns] == ["patient", "therapist"] * 2
    assert first.turns[2].text == "The deadlines."

    calls = len(server.requests)
    again = tg.judge(conversations, judge=judge, store=store, progress=False)
    assert again.run_id == res.run_id and len(server.requests) == calls  # resumed, judged nothing

    other = [[{"role": "user", "content": "Hi."}, {"role": "assistant", "content": "Hello."}]]
    with pytest.raises(TherapygymError, match=r"already exists .* different conversations"):
        tg.judge(other, judge=judge, run_id=res.run_id, store=store, progress=False)


def test_judge_takes_transcripts_and_another_therapist_role(
    evaluated: tg.Evaluation, model: str, tmp_path: Path
) -> None:
    """A run's own transcripts judged again into a new run: new ids, the old one kept."""
    transcripts = evaluated.transcripts()[:2]
    res = tg.judge(transcripts, judge=model, store=evaluated.store_path, progress=False)
    copied = res.transcripts()
    assert {t.meta["source_session_id"] for t in copied} == {t.session_id for t in transcripts}
    assert not {t.session_id for t in copied} & {t.session_id for t in transcripts}

    flipped = [
        {
            "messages": [
                {"role": "assistant", "content": "I feel low."},
                {"role": "user", "content": "Tell me more."},
            ]
        }
    ]
    res = tg.judge(
        flipped, judge=model, therapist_role="user", store=tmp_path / "s.sqlite", progress=False
    )
    assert [t.speaker for t in res.transcripts()[0].turns] == ["patient", "therapist"]


ASSISTANT = {"role": "assistant", "content": "b"}


@pytest.mark.parametrize(
    ("conversations", "message"),
    [
        ([{"text": "hi"}], "conversation 0: field 'messages': expected a list"),
        (
            [
                {"messages": [{"role": "user", "content": "a"}, ASSISTANT]},
                {"messages": [{"role": "tool", "content": "x"}]},
            ],
            r"conversation 1: field 'messages\[0\].role': got 'tool'; expected the therapist "
            "role 'assistant'",
        ),
        ([{"messages": [{"role": "user"}]}], r"field 'messages\[0\].content': expected text"),
        ([{"messages": [{"role": "user", "content": 3}]}], r"\[0\].content': expected text"),
        ([{"messages": [{"role": "user", "content": "alone"}]}], "no assistant message"),
        ([{"messages": []}], "expected at least one message"),
        ([{"messages": [ASSISTANT], "metadata": [1]}], "field 'metadata': expected an object"),
        ([42], "conversation 0: expected a Transcript"),
        ([], "the list is empty"),
        ("chats.jsonl", "not a string"),
    ],
)
def test_bad_conversations_name_the_index_and_field(
    conversations: Any, message: str, tmp_path: Path
) -> None:
    store = tmp_path / "runs.sqlite"
    with pytest.raises(ConversationError, match=message):
        tg.judge(conversations, judge="openai:unused", store=store, progress=False)
    assert not store.exists()  # refused before anything was stored


def test_bad_arguments_are_named_before_anything_is_written(tmp_path: Path) -> None:
    store = tmp_path / "runs.sqlite"

    def call(**given: Any) -> None:
        args: dict[str, Any] = {"therapists": "rule-based", "patients": "dep-01-maya"}
        tg.evaluate(**{**args, **given}, store=store, progress=False)

    with pytest.raises(TherapygymError, match=r"--patients term 'nobody-\*' matches no profile"):
        call(patients="nobody-*")
    with pytest.raises(TherapygymError, match=r"evaluate\(samples=0\): .*greater than or equal"):
        call(samples=0)
    with pytest.raises(TherapygymError, match=r"evaluate\(turns=0\)"):
        call(turns=0)
    with pytest.raises(TherapygymError, match=r"evaluate\(aggregation='max'\)"):
        call(aggregation="max")
    with pytest.raises(TherapygymError, match=r"evaluate\(rubrics='nope'\)"):
        call(judges=["openai:x?base_url=http://127.0.0.1:9/v1"], rubrics=["nope"])
    with pytest.raises(TherapygymError, match=r"evaluate\(run_id='a b'\)"):
        call(run_id="a b")
    with pytest.raises(TherapygymError, match="model spec"):
        call(judges=["nobackend:x"])
    with pytest.raises(TherapygymError, match="patients: the list is empty"):
        call(patients=[])
    chat = [{"role": "assistant", "content": "b"}]
    with pytest.raises(TherapygymError, match="judge: unknown model spec 'nobackend:x'"):
        tg.judge([chat], judge="nobackend:x", store=store)
    with pytest.raises(TherapygymError, match=r"judge\(judge_samples=0\)"):
        tg.judge([chat], judge="openai:x", judge_samples=0, store=store)
    assert not store.exists()


def test_patients_may_be_library_profiles(model: str, tmp_path: Path) -> None:
    maya = next(p for p in load_profiles() if p.id == "dep-01-maya")
    res = tg.evaluate(
        ["rule-based"],
        [maya, "gad-01-priya"],
        patient_model=model,
        turns=2,
        store=tmp_path / "s.sqlite",
        progress=False,
    )
    assert res.summary is None  # sessions only
    assert set(res.to_pandas("sessions")["profile_id"]) == {"dep-01-maya", "gad-01-priya"}
    changed = maya.model_copy(update={"opening_line": "I would rather not be here."})
    with pytest.raises(TherapygymError, match=r"patients\[0\]: profile 'dep-01-maya' is not"):
        tg.evaluate(["rule-based"], [changed], patient_model=model, store=tmp_path / "s.sqlite")


def test_failed_work_is_counted_and_warned(
    openai_server: Any, server_spec: Any, tmp_path: Path
) -> None:
    """A judge that never answers valid JSON: its units fail for good, and the result and
    a warning say so, with how to retry; nothing raises."""
    judge = server_spec(openai_server("no json here"))
    conversation = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    with pytest.warns(FailedWorkWarning, match=r"judgement units failed .*run_id='c'"):
        res = tg.judge(
            [conversation],
            judge=judge,
            rubrics=["safety"],
            run_id="c",
            store=tmp_path / "s.sqlite",
            progress=False,
        )
    assert res.failed == 1 and res.errors
    assert "Failed" in res._repr_html_()
    assert tg.load_run("c", store=tmp_path / "s.sqlite").failed == 1


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_evaluate_with_the_embedded_model(tmp_path: Path) -> None:
    """The README's call, small: the embedded model as patient and judge, offline."""
    res = tg.evaluate(
        ["rule-based"],
        "dep-01-maya",
        ["local:smollm2"],
        turns=2,
        rubrics="safety@1.0",  # 2.0's prompt is past its 8k context
        store=tmp_path / "s.sqlite",
        progress=False,
    )
    assert res.failed == 0
    assert res.summary is not None and res.summary.embedded_judges == ["local:smollm2"]
    assert "no clinical meaning" in res._repr_html_()
