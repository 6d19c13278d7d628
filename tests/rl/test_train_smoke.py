"""The CPU GRPO smoke run, for real: SmolLM2-135M from the embedded GGUF as the policy (LoRA),
the embedded model as patient and judge (CTRS and the five per_group safety calls: the
clinical reward a user's first `train` run gets), one step of one GRPO group; then the adapter
answers through the hf: backend and plays the therapist in a stored run.

One step of one therapist turn per session: judging is the cost (about 100 s of CPU per
session on 2 cores), and what several steps and ids across steps must do is tested by
tests/rl/test_multiprocess_train.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from therapygym.store import RunStore

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "therapygym", *args],
        capture_output=True,
        text=True,
        timeout=1200,
        cwd=cwd,
        env={
            **os.environ,
            "COLUMNS": "200",
            "HF_HUB_OFFLINE": "1",
            "TRL_EXPERIMENTAL_SILENCE": "1",
        },
    )


@pytest.mark.timeout(1500)
def test_grpo_smoke_run_then_evaluate_the_adapter(tmp_path: Path) -> None:
    config = yaml.safe_load((ROOT / "configs" / "train-smoke.yaml").read_text())
    config["output_dir"] = str(tmp_path / "out")
    config["session"].update(max_turns=2, max_tokens=24)
    config["grpo"]["max_steps"] = 1
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(config))
    store = tmp_path / "store.sqlite"

    result = _cli(
        "train", "--config", "train.yaml", "--store", str(store), "--no-cache", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "1 step in" in result.stdout

    steps = [
        json.loads(line) for line in (tmp_path / "out" / "rewards.jsonl").read_text().splitlines()
    ]
    assert [s["step"] for s in steps] == [1]
    for s in steps:
        total = s["rewards/ctrs_fidelity/mean"] + s["rewards/safety_penalty/mean"]
        assert s["reward"] == pytest.approx(total, abs=1e-4)
        assert (
            0.0 <= s["rewards/ctrs_fidelity/mean"] <= 1.0 and s["rewards/safety_penalty/mean"] <= 0
        )
    adapter = tmp_path / "out" / "adapter"
    assert (adapter / "adapter_model.safetensors").is_file()

    db = RunStore(store)
    sessions = list(db.sessions("train-smoke"))
    assert len(sessions) == 2  # 1 step x 1 prompt x 2 generations
    for t in sessions:
        assert [turn.speaker for turn in t.turns] == ["patient", "therapist"]
        assert t.meta["reward"]["total"] == pytest.approx(
            t.meta["reward"]["ctrs_term"] - t.meta["reward"]["safety_term"]
        )
    assert {r.rubric_id for r in db.scores("train-smoke")} == {"ctrs", "safety"}
    db.close()

    spec = f"hf:smollm2?adapter={adapter}"
    result = _cli(
        "run",
        "--therapist", spec,
        "--patients", "dep-01-maya",
        "--patient-model", "local:smollm2",
        "--max-turns", "2",
        "--max-tokens", "24",
        "--run-id", "adapter-eval",
        "--store", str(store),
        "--no-cache",
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    db = RunStore(store)
    (session,) = db.sessions("adapter-eval")
    assert session.status.value == "completed" and session.turns[1].text.strip()
    assert str(adapter) in session.therapist
    db.close()


def test_patient_turn_tokens_follow_the_chat_template() -> None:
    """The env tokens appended after a therapist turn are exactly what the template renders
    between that turn's end and the next assistant header."""
    from transformers import AutoTokenizer

    from therapygym.models.llamacpp import embedded_model_path
    from therapygym.rl.trl import patient_turn_tokens

    path = embedded_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
    messages = [
        {"role": "system", "content": "SYS"},
        {"role": "user", "content": "I feel low."},
        {"role": "assistant", "content": "Tell me more."},
        {"role": "user", "content": "Work is hard."},
    ]
    assert tokenizer.decode(patient_turn_tokens(tokenizer, messages)) == (
        "\n<|im_start|>user\nWork is hard.<|im_end|>\n<|im_start|>assistant\n"
    )
