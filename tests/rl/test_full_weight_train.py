"""Full-weight training (`lora: null`) end to end through `train`, as the CLI runs it: two
GRPO steps of the tiny random Llama (tests/rl/tinylm.py, saved as a model folder), the
patient and the judge a scripted local server. Every weight may move, the trained model is
saved once to <output_dir>/model (no adapter), and that folder loads back, by transformers
and as a therapist through the hf: backend (what the CLI tells the user to evaluate)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from judges.scripted import instance

pytest.importorskip("trl", reason="the [train] extra is not installed")

from tinylm import tiny_base

from therapygym.models import load_model
from therapygym.rl.loop import BackgroundLoop
from therapygym.rl.train import load_train_config, train
from therapygym.store import RunStore


def _alternating_judge() -> Any:
    """Every other session's CTRS call rates 6, the others' 1 (each step's two rollouts
    then differ, so GRPO has an advantage to follow); the safety call finds nothing; the
    patient says "Fine."."""
    calls = itertools.count()

    def reply(body: dict[str, Any]) -> Any:
        fmt = body.get("response_format")
        if not fmt:
            return "Fine."
        schema = fmt["json_schema"]["schema"]
        if '"agenda"' not in json.dumps(schema):  # the safety call
            return instance(schema, schema, 4, "no")
        return instance(schema, schema, 6 if next(calls) % 2 == 0 else 1, "no")

    return reply


def _state(folder: Path) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    return {name: p.detach().clone() for name, p in model.state_dict().items()}


def test_full_weight_grpo_trains_saves_the_model_once_and_it_loads_back(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    import torch

    base, spec = tiny_base(tmp_path / "base"), server_spec(openai_server(_alternating_judge()))
    weights = tmp_path / "weights.yaml"
    weights.write_text(yaml.safe_dump({"ctrs": {"agenda": 1.0}}))
    out = tmp_path / "out"
    config = tmp_path / "train.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "run_id": "full",
                "model": str(base),
                "patient_model": spec,
                "judge": spec,
                "patients": "dep-01-maya",
                "session": {"max_turns": 2, "max_tokens": 16},  # one therapist turn
                "turn_tokens": 8,
                "reward_weights": str(weights),
                "lora": None,
                "grpo": {"max_steps": 2, "learning_rate": 0.05, "max_completion_length": 4096},
                "output_dir": str(out),
            }
        )
    )
    store = RunStore(tmp_path / "store.sqlite")
    try:
        result = train(load_train_config(config), store=store, cache=None)
        assert len(list(store.sessions("full"))) == 4  # 2 steps x 2 generations
    finally:
        store.close()

    assert result.steps == 2 and result.adapter == out / "model"
    assert sorted(p.name for p in out.iterdir()) == ["model", "rewards.jsonl", "trainer"]
    assert not list((out / "trainer").glob("checkpoint-*"))  # saved once, at the end
    saved = out / "model"
    assert (saved / "model.safetensors").is_file() and (saved / "tokenizer.json").is_file()
    assert not (saved / "adapter_config.json").exists()
    rows = [json.loads(line) for line in (out / "rewards.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["reward"] == pytest.approx(7 / 12) for r in rows)  # agenda 6/6 and 1/6

    before, after = _state(base), _state(saved)
    assert before.keys() == after.keys()
    moved = [n for n in before if not torch.equal(before[n], after[n])]
    assert any(n.startswith("model.layers.0.self_attn") for n in moved)  # not only a head

    therapist = load_model(f"hf:{saved}")
    loop = BackgroundLoop()
    try:
        said = [{"role": "user", "content": "I feel low."}]
        reply = loop.run(therapist.chat(said, max_tokens=4))
    finally:
        loop.run(therapist.aclose())
        loop.close()
    assert reply.completion_tokens >= 1


def test_train_refuses_chat_template_kwargs_the_policy_s_template_never_names(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    """`enable_thinking` on a template without it (this ChatML one) would train with the
    option silently ignored: `train` stops at the config check (the tokenizer alone),
    before the run's record holds the key (a rerun with it fixed must not meet a record
    that differs), with the key named."""
    from therapygym.errors import ConfigError

    base, spec = tiny_base(tmp_path / "base"), server_spec(openai_server(_alternating_judge()))
    config = tmp_path / "train.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "run_id": "unread",
                "model": str(base),
                "patient_model": spec,
                "judge": spec,
                "patients": "dep-01-maya",
                "chat_template_kwargs": {"enable_thinking": False},
                "lora": None,
                "grpo": {"max_steps": 1},
                "output_dir": str(tmp_path / "out"),
            }
        )
    )
    store = RunStore(tmp_path / "store.sqlite")
    try:
        with pytest.raises(ConfigError, match="enable_thinking: the chat template of"):
            train(load_train_config(config), store=store, cache=None)
        assert not store.runs()
    finally:
        store.close()
    assert not (tmp_path / "out" / "model").exists()
