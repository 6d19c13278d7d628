"""A training run resumed from its checkpoint, in one process, as docs/training.md tells a
user to do it after a kill (`grpo.resume_from_checkpoint`, nothing else changed): the tiny
random Llama (tests/rl/tinylm.py) with LoRA, the patient and judge a scripted local server.
The resume is accepted as the same run, replays the steps after the checkpoint into the
sessions they had, keeps the reward log whole, and ends with the adapter the run that was
never stopped saved. (`test_deepspeed_train.py` does the same under ZeRO-3.)"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("trl", reason="the [train] extra is not installed")

from tinylm import tiny_base, transcript_judge

from therapygym.rl.train import load_train_config, train
from therapygym.store import RunStore, StoreError


def _config(tmp_path: Path, spec: str, **grpo: Any) -> Path:
    """The tiny policy's train config (the policy saved in tmp_path/base by the test)."""
    path = tmp_path / "train.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "run_id": "resumed",
                "model": str(tmp_path / "base"),
                "patient_model": spec,
                "judge": spec,
                "patients": "dep-01-maya",
                "session": {"max_turns": 2, "max_tokens": 16},  # one therapist turn
                "turn_tokens": 8,
                "grpo": {
                    "max_steps": 3,
                    "learning_rate": 0.05,
                    "max_completion_length": 4096,
                    "save_strategy": "steps",
                    "save_steps": 1,
                    **grpo,
                },
                "output_dir": str(tmp_path / "out"),
            }
        )
    )
    return path


def _train(config: Path, store: RunStore) -> Any:
    return train(load_train_config(config), store=store, cache=None)


def _adapter(out: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(out / "adapter" / "adapter_model.safetensors")


def test_a_run_resumed_from_its_checkpoint_ends_as_the_unstopped_run(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    import torch

    spec = server_spec(openai_server(transcript_judge))
    tiny_base(tmp_path / "base")
    out = tmp_path / "out"
    store = RunStore(tmp_path / "store.sqlite")
    try:
        _train(_config(tmp_path, spec), store)
        unstopped = _adapter(out)
        sessions = {t.session_id: t for t in store.sessions("resumed")}
        assert len(sessions) == 6  # 3 steps x 2 generations
        log = (out / "rewards.jsonl").read_text().splitlines()
        assert [json.loads(line)["step"] for line in log] == [1, 2, 3]
        assert any(json.loads(line)["reward_std"] > 0 for line in log)  # the adapter moved

        # as after a kill during step 3: its row half written, its checkpoint not yet saved
        (out / "rewards.jsonl").write_text("\n".join(log[:2]) + "\n" + log[2][:20])
        checkpoint = out / "trainer" / "checkpoint-2"
        result = _train(_config(tmp_path, spec, resume_from_checkpoint=str(checkpoint)), store)
        assert result.steps == 3
        again = (out / "rewards.jsonl").read_text().splitlines()
        assert again == log  # steps 1-2 kept, step 3 logged once more, as it was
        replayed = {t.session_id: t for t in store.sessions("resumed")}
        assert replayed.keys() == sessions.keys()
        assert [replayed[k].turns[-1].text for k in sorted(replayed)] == [
            sessions[k].turns[-1].text for k in sorted(sessions)
        ]
        resumed = _adapter(out)
        assert resumed.keys() == unstopped.keys()
        assert all(torch.equal(resumed[name], unstopped[name]) for name in unstopped)

        # any other change is another run
        with pytest.raises(StoreError, match=r"already exists in .* with a different train"):
            _train(_config(tmp_path, spec, learning_rate=0.01), store)
    finally:
        store.close()
