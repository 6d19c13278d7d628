"""`therapygym train` under `accelerate launch --num_processes 2`, for the tests that
launch it for real: the launch command with a shipped accelerate config and its
environment, a train config for the tiny random Llama (tinylm.py), and what a run leaves
behind (the reward log's steps, the stored session ids, a saved safetensors file)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from tinylm import tiny_base

from therapygym.store import RunStore

ROOT = Path(__file__).resolve().parents[2]
RANKS = 2
RUN_ID = "ds"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def train_config(
    tmp_path: Path, spec: str, *, lora: bool, model: str | None = None, **grpo: Any
) -> Path:
    """The tiny policy saved as a model folder (unless `model` names another), and a train
    config for it: two steps (unless `grpo` says otherwise), one rollout per rank per step
    (one prompt's group of two), one therapist turn."""
    if model is None:
        model = str(tiny_base(tmp_path / "base"))
    config: dict[str, Any] = {
        "run_id": RUN_ID,
        "model": model,
        "patient_model": spec,
        "judge": spec,
        "patients": "dep-01-maya",
        "session": {"max_turns": 2, "max_tokens": 16},
        "turn_tokens": 8,
        "grpo": {
            "max_steps": 2,
            "num_generations": RANKS,
            "per_device_train_batch_size": 1,
            "learning_rate": 0.05,
            "max_completion_length": 4096,
            **grpo,
        },
        "output_dir": str(tmp_path / "out"),
    }
    if not lora:
        config["lora"] = None
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def rewrite(path: Path, **grpo: Any) -> None:
    config = yaml.safe_load(path.read_text())
    config["grpo"].update(grpo)
    path.write_text(yaml.safe_dump(config))


def launch_command(accelerate: str, config: Path, store: Path) -> list[str]:
    """`accelerate launch` with the shipped configs/accelerate/<accelerate>.yaml, to be run
    from the repository root (a DeepSpeed YAML names its JSON by that path, as
    docs/training.md says to run it)."""
    return [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(ROOT / "configs" / "accelerate" / f"{accelerate}.yaml"),
        "--num_processes", str(RANKS),
        "--main_process_port", str(free_port()),
        "-m", "therapygym",
        "train", "--config", str(config), "--store", str(store), "--no-cache",
    ]  # fmt: skip


def launch_env(**env: str) -> dict[str, str]:
    return {
        **os.environ,
        "COLUMNS": "200",
        "HF_HUB_OFFLINE": "1",
        "TRL_EXPERIMENTAL_SILENCE": "1",
        "OMP_NUM_THREADS": "1",
        **env,
    }


def launch(
    accelerate: str, config: Path, store: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        launch_command(accelerate, config, store),
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env=launch_env(**env),
    )


def reward_steps(out: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (out / "rewards.jsonl").open()]


def session_ids(store: Path) -> list[str]:
    db = RunStore(store, read_only=True)
    try:
        return sorted(t.session_id for t in db.sessions(RUN_ID))
    finally:
        db.close()


def tensors(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(path)
