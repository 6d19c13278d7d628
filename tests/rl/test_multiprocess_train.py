"""`therapygym train` under `accelerate launch --num_processes 2` on CPU (gloo), for real:
two GRPO steps of the embedded model with the shipped DDP config, each rank with its own
in-process patient (the embedded model, one llama.cpp thread each, so two ranks fit two
cores), starting with an empty conversion cache as on a new machine
(`models/dequantised.py`).

What several processes must not break: every rank's sessions reach the one store (the
main process writes them all), none overwrites another's (ids carry the rank), the ids are
the ones the config fixes (so a rerun or a resume finds them again), and the adapter and
rewards.jsonl are written once.

The judge is a scripted local server (`tinylm.transcript_judge`: CTRS scores hashed from
the transcript, nothing unsafe) giving the shipped clinical reward, CTRS and the five
per_group safety calls. The embedded model as judge cost about 75 s of CPU per session for
CTRS alone on one llama.cpp thread, some 150 s of this test's 3 minutes in CI, and a rank
calls a judge server as it calls any model; the embedded judge in process is what the
GRPO smoke run (tests/rl/test_train_smoke.py) holds."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from launched import RANKS, ROOT, launch_command, launch_env
from tinylm import transcript_judge

from therapygym.models.dequantised import is_converted
from therapygym.store import RunStore

pytestmark = pytest.mark.slow

STEPS = 2


def _config(tmp_path: Path, judge: str) -> Path:
    """configs/train-smoke.yaml made as small as a run can be: one therapist turn per
    session, one rollout per rank per step, the judge at `judge`."""
    config = yaml.safe_load((ROOT / "configs" / "train-smoke.yaml").read_text())
    config.update(
        run_id="train-2proc",
        patient_model="local:smollm2?threads=1",
        judge=judge,
        session={"max_turns": 2, "max_tokens": 16, "temperature": 0.7},
        turn_tokens=16,
        output_dir=str(tmp_path / "out"),
    )
    # 2 ranks x 1 rollout = one prompt's group of 2 generations per step
    config["grpo"] = {
        "max_steps": STEPS,
        "num_generations": 2,
        "per_device_train_batch_size": 1,
        "learning_rate": 1.0e-4,
        "max_completion_length": 256,
    }
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.timeout(1500)
def test_two_processes_store_every_rollout_once_and_save_once(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    store = tmp_path / "store.sqlite"
    judge = server_spec(openai_server(transcript_judge))
    result = subprocess.run(
        launch_command("ddp", _config(tmp_path, judge), store),
        capture_output=True,
        text=True,
        timeout=1200,
        cwd=tmp_path,
        # no conversion of the policy yet, as on a new machine: both ranks find none
        env=launch_env(XDG_CACHE_HOME=str(tmp_path / "cache")),
    )
    assert result.returncode == 0, result.stderr[-4000:]
    # the main process alone prints: one line per step, one summary
    assert result.stdout.count(f"{STEPS} steps in") == 1, result.stdout
    assert result.stdout.count("step 1: ") == 1 and result.stdout.count("step 2: ") == 1

    rows = [json.loads(line) for line in (tmp_path / "out" / "rewards.jsonl").open()]
    assert [r["step"] for r in rows] == [1, 2]
    adapter = tmp_path / "out" / "adapter"
    assert (adapter / "adapter_model.safetensors").is_file()
    assert (adapter / "tokenizer_config.json").is_file()
    assert {p.name for p in (tmp_path / "out").iterdir()} <= {"adapter", "rewards.jsonl", "trainer"}

    # rank 0 filled the conversion cache; rank 1 (whose save transformers skips) left no
    # half folder in its place
    (converted,) = (tmp_path / "cache" / "therapygym" / "dequantised").iterdir()
    assert is_converted(converted)

    db = RunStore(store, read_only=True)
    try:
        (run,) = db.runs()
        assert run.config["processes"] == RANKS
        sessions = list(db.sessions("train-2proc"))
        # the ids the config fixes: step k, rank r, that rank's first rollout of the step
        expected = {f"train-2proc:step{k}:rank{r}:1" for k in range(STEPS) for r in range(RANKS)}
        assert {t.session_id for t in sessions} == expected
        for t in sessions:
            assert [turn.speaker for turn in t.turns] == ["patient", "therapist"]
            assert "total" in t.meta["reward"]
        scores = list(db.scores("train-2proc"))
        # every rank's score records came with its sessions, for both rubrics
        assert {r.session_id for r in scores} == expected
        assert {(r.session_id, r.rubric_id) for r in scores} == {
            (sid, rubric) for sid in expected for rubric in ("ctrs", "safety")
        }
    finally:
        db.close()
