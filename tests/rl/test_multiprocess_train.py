"""`therapygym train` under `accelerate launch --num_processes 2` on CPU (gloo), for real:
two GRPO steps of the embedded model with the shipped DDP config, each rank with its own
in-process patient and judge (one llama.cpp thread each, so two ranks fit two cores),
starting with an empty conversion cache as on a new machine (`models/dequantised.py`).

What several processes must not break: every rank's sessions reach the one store (the
main process writes them all), none overwrites another's (ids carry the rank), the ids are
the ones the config fixes (so a rerun or a resume finds them again), and the adapter and
rewards.jsonl are written once.

The reward is CTRS alone (`no-safety`: the safety judge is not called): on one llama.cpp
thread the CTRS call of a session costs ~75 s of CPU and the five per_group safety calls
~105 s more, and the ranks' plumbing is the same either way. Measured with the safety judge
(clinical): 19 min 19 s on this shared 2-core box at load 8, 15.4 CPU-minutes (about 7 min
on 2 idle cores); without it about 4 min on 2 idle cores (2 x 75 s judging per rank, ~60 s
to start and dequantise the policy)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from launched import RANKS, ROOT, launch_command, launch_env

from therapygym.models.dequantised import is_converted
from therapygym.store import RunStore

pytestmark = pytest.mark.slow

STEPS = 2


def _config(tmp_path: Path) -> Path:
    """configs/train-smoke.yaml made as small as a run can be: one therapist turn per
    session, one rollout per rank per step, short judge answers, the CTRS judge alone."""
    config = yaml.safe_load((ROOT / "configs" / "train-smoke.yaml").read_text())
    config.update(
        run_id="train-2proc",
        patient_model="local:smollm2?threads=1",
        judge="local:smollm2?threads=1",
        session={"max_turns": 2, "max_tokens": 16, "temperature": 0.7},
        turn_tokens=16,
        judge_rationale_chars=20,
        judge_examples=False,
        reward_weights="no-safety",
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
def test_two_processes_store_every_rollout_once_and_save_once(tmp_path: Path) -> None:
    store = tmp_path / "store.sqlite"
    result = subprocess.run(
        launch_command("ddp", _config(tmp_path), store),
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
        judged = {r.session_id for r in db.scores("train-2proc")}
        assert judged == expected  # every rank's score records came with its sessions
    finally:
        db.close()
