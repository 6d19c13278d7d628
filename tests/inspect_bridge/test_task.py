"""`inspect eval therapygym/ctrs_session --model mockllm/model`, offline: Inspect's real
CLI in a subprocess, our patient and judges as scripted `python:` callables
(scripted_models.py), the log read back with `read_eval_log`."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("inspect_ai", reason="pip install -e '.[inspect]'")

from inspect_ai.log import EvalLog, read_eval_log
from inspect_ai.model import ContentReasoning, ContentText, ModelOutput, ModelUsage, get_model

from therapygym.inspect_bridge.chat_model import InspectChatModel
from therapygym.judges.rubric import builtin_rubric

HERE = Path(__file__).parent
INSPECT = Path(sys.executable).parent / "inspect"
ITEMS = [i.id for i in builtin_rubric("ctrs").items]  # type: ignore[attr-defined]
LABELS = [lb.id for lb in builtin_rubric("safety").labels]  # type: ignore[attr-defined]
MOCK_REPLY = "Default output from mockllm/model"


def inspect_eval(tmp_path: Path, *task_args: str) -> subprocess.CompletedProcess[str]:
    paths = [HERE / "offline", HERE, HERE.parent / "judges"]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(map(str, paths)),
        "INSPECT_LOG_DIR": str(tmp_path / "logs"),
    }
    args = [f"-T{a}" for a in ("turns=4", "patient=python:scripted_models:patient", *task_args)]
    return subprocess.run(
        [str(INSPECT), "eval", "therapygym/ctrs_session", "--model", "mockllm/model",
         "--display", "plain", *args],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,
    )  # fmt: skip


def the_log(tmp_path: Path) -> EvalLog:
    (path,) = (tmp_path / "logs").glob("*.eval")
    return read_eval_log(str(path))


def metric(log: EvalLog, scorer: str, key: str, name: str = "mean") -> float:
    assert log.results is not None
    (score,) = [s for s in log.results.scores if s.scorer == scorer and s.name == key]
    return score.metrics[name].value


def test_a_session_per_profile_scored_by_our_judges(tmp_path: Path) -> None:
    ran = inspect_eval(
        tmp_path,
        "patients=dep-01-maya,gad-01-priya",
        "judge=python:scripted_models:judge_flags",
        "judge_samples=2",
    )
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    log = the_log(tmp_path)
    assert log.status == "success" and log.eval.task == "therapygym/ctrs_session"
    assert log.samples is not None
    assert sorted(s.id for s in log.samples) == ["dep-01-maya", "gad-01-priya"]
    for sample in log.samples:
        # the therapist's system prompt, then four turns: the profile's opening line,
        # the mock therapist, the scripted patient, the mock therapist
        roles = [m.role for m in sample.messages]
        assert roles == ["system", "user", "assistant", "user", "assistant"]
        assert sample.messages[1].text == sample.metadata["profile"]["opening_line"]
        assert sample.messages[2].text == MOCK_REPLY and sample.output.completion == MOCK_REPLY
        assert sample.messages[3].text.startswith("Patient says more")
        assert sample.messages[2].id.endswith(":1")  # the turn id judges cite

        ctrs = sample.scores["ctrs"]
        assert ctrs.value == {"total": 22.0, "normalised": pytest.approx(2 / 6)} | dict.fromkeys(
            ITEMS, 2.0
        )
        assert ctrs.explanation.startswith("CTRS total 22/66")
        assert "Scripted rationale." in ctrs.explanation
        agenda = ctrs.metadata["items"]["agenda"]
        assert agenda["raters"] == 2 and len(agenda["reasons"]) == 2  # two judge samples
        assert ctrs.metadata["judge"] == "python:scripted_models:judge_flags"

        safety = sample.scores["safety"]
        assert safety.value["any_violation"] == 1.0
        assert set(safety.value) == {"any_violation", *LABELS}
        assert all(v in (0.0, 1.0) or math.isnan(v) for v in safety.value.values())
        violated = [k for k, v in safety.value.items() if v == 1.0 and k != "any_violation"]
        assert violated and safety.explanation.startswith(f"{len(violated)} violation(s)")
        assert safety.metadata["labels"][violated[0]]["verdict"] == "yes"

    assert metric(log, "ctrs", "total") == 22.0
    assert metric(log, "ctrs", "total", "stderr") == 0.0
    assert metric(log, "ctrs", "homework") == 2.0
    assert metric(log, "safety", "any_violation") == 1.0
    # a label's rate is over the sessions where it applied (NaN = did not apply)
    for label in LABELS:
        values = [s.scores["safety"].value[label] for s in log.samples]
        applied = [v for v in values if not math.isnan(v)]
        got = metric(log, "safety", label)
        assert got == pytest.approx(sum(applied) / len(applied)) if applied else math.isnan(got)


def test_a_bad_task_argument_fails_before_any_session(tmp_path: Path) -> None:
    ran = inspect_eval(tmp_path, "patients=condition:nonsense")
    assert ran.returncode != 0
    assert "--patients term 'condition:nonsense' matches no profile" in ran.stdout + ran.stderr


async def test_the_inspect_model_answers_as_a_chat_model() -> None:
    reply = ModelOutput.from_content(model="mockllm", content="How did the week go?")
    reply.usage = ModelUsage(input_tokens=11, output_tokens=5, total_tokens=16)
    model = InspectChatModel(get_model("mockllm/model", custom_outputs=[reply]))
    got = await model.chat(
        [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi."}],
        temperature=0.3,
        max_tokens=64,
        seed=7,
    )
    assert model.spec == "mockllm/model"
    assert (got.text, got.prompt_tokens, got.completion_tokens) == ("How did the week go?", 11, 5)
    assert got.finish_reason == "stop"


async def test_a_reasoning_models_thinking_is_kept_apart_from_its_reply() -> None:
    thought = ContentReasoning(reasoning="The client sounds low; ask about sleep.")
    reply = ModelOutput.from_content(
        model="mockllm", content=[thought, ContentText(text="How have you been sleeping?")]
    )
    reply.usage = ModelUsage(input_tokens=3, output_tokens=9, total_tokens=12)
    model = InspectChatModel(get_model("mockllm/model", custom_outputs=[reply]))
    got = await model.chat([{"role": "user", "content": "I'm tired all the time."}])
    assert got.text == "How have you been sleeping?"
    assert got.reasoning == "The client sounds low; ask about sleep."
