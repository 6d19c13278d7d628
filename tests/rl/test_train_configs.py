"""The shipped training configs (configs/train-*.yaml) pass `check_train_config` offline,
and the paper's variants differ from the main config only where they say they do.

Offline means: the patient and judge specs are built without connecting, the policy is not
loaded (check_train_config never loads it), the calibrated weights file is one written by
`calibrate`'s own writer, and the three questions only a GPU machine can answer are
answered as on one: transformers' "does the GPU do bf16", torch's "is a GPU visible" and
"is vLLM installed" (the configs ask for bf16 and vLLM; a CPU-only machine refuses both,
rightly). Nothing else is patched: TRL's GRPOConfig and our checks run as they are.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from therapygym.calibration.bench import ctrs_item_ids, safety_label_ids
from therapygym.calibration.weights import RewardWeights, write_weights
from therapygym.errors import ConfigError
from therapygym.rl import generation
from therapygym.rl.reward import load_reward_spec
from therapygym.rl.train import TrainInputs, check_train_config, load_train_config

pytest.importorskip("trl", reason="the [train] extra is not installed")

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
SHIPPED = sorted(CONFIGS.glob("train-*.yaml"))
PAPER = CONFIGS / "train-qwen3-4b.yaml"
FULL = CONFIGS / "train-qwen3-4b-full.yaml"
NO_SAFETY = CONFIGS / "train-qwen3-4b-no-safety.yaml"
# what differs between runs of one experiment whatever they compare
PER_RUN = {"run_id", "output_dir"}


@pytest.fixture
def calibrated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory holding results/calibration/reward_weights.yaml as `calibrate`
    writes it (two CTRS items kept, one safety label dropped), on a machine that, asked, has
    a bf16 GPU and vLLM."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("transformers.training_args.is_torch_bf16_gpu_available", lambda: True)
    check_generation, find_spec = generation.check_generation, importlib.util.find_spec

    def on_a_gpu_with_vllm(*args: Any) -> None:
        # only while our generation checks run: TRL's own arguments would set up CUDA
        with monkeypatch.context() as gpu:
            gpu.setattr("torch.cuda.is_available", lambda: True)
            gpu.setattr(
                importlib.util,
                "find_spec",
                lambda name, *rest: (
                    importlib.machinery.ModuleSpec(name, None)
                    if name == "vllm"
                    else find_spec(name, *rest)
                ),
            )
            check_generation(*args)

    monkeypatch.setattr(generation, "check_generation", on_a_gpu_with_vllm)
    kept = {"agenda", "feedback"}
    weights = RewardWeights(
        created_at="2026-12-06T00:00:00+00:00",
        bench="bench.jsonl",
        bench_digest="0" * 16,
        min_human_alpha=0.4,
        ctrs={i: (0.5 if i in kept else 0.0) for i in ctrs_item_ids()},
        safety={j: (0.0 if j == "stigmatising_language" else 1.0) for j in safety_label_ids()},
        dropped={"stigmatising_language": "expert kappa below 0.40"},
        not_assessed=[],
    )
    path = tmp_path / "results" / "calibration" / "reward_weights.yaml"
    path.parent.mkdir(parents=True)
    write_weights(weights, path)
    return path


def _checked(path: Path) -> TrainInputs:
    return check_train_config(load_train_config(path), where=str(path))


def _raw(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def test_configs_are_shipped() -> None:
    assert {PAPER, FULL, NO_SAFETY} <= set(SHIPPED)
    assert CONFIGS / "train-smoke.yaml" in SHIPPED


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_config_passes_the_checks(path: Path, calibrated: Path) -> None:
    inputs = _checked(path)
    assert inputs.profiles
    assert inputs.grpo_args.num_generations >= 2  # GRPO needs a group to compare within


def test_the_paper_config_says_what_the_paper_did(calibrated: Path) -> None:
    config = load_train_config(PAPER)
    args = _checked(PAPER).grpo_args
    assert args.num_generations == 4
    assert args.generation_batch_size == 16  # one GPU: 4 groups of 4 per step
    assert args.learning_rate == 1e-6
    assert args.bf16 and args.gradient_checkpointing and args.use_vllm and not args.use_cpu
    assert config.lora is not None
    # visible replies, no <think> blocks: the rollout renders with these, TRL holds the same
    assert config.chat_template_kwargs == args.chat_template_kwargs == {"enable_thinking": False}
    for spec in (config.patient_model, config.judge):
        assert spec.startswith("openai:") and "base_url=http" in spec
    # the calibrated CTRS weights, the paper's flat lambda = 1 where calibrate kept a label
    reward = _checked(PAPER).reward
    assert reward.ctrs["agenda"] == 0.5 and reward.ctrs["homework"] == 0.0
    assert reward.penalty("crisis_unaddressed", "low") == 1.0
    assert reward.penalty("crisis_unaddressed", "critical") == 1.0
    assert reward.penalty("stigmatising_language", "critical") == 0.0  # calibrate dropped it
    assert reward.source == f"{calibrated.relative_to(Path.cwd())}?penalties=therapygym-flat"


def test_the_full_weight_variant_differs_only_in_lora(calibrated: Path) -> None:
    main, full = _raw(PAPER), _raw(FULL)
    assert full["lora"] is None and main["lora"]
    assert {k: v for k, v in full.items() if k not in PER_RUN | {"lora"}} == {
        k: v for k, v in main.items() if k not in PER_RUN | {"lora"}
    }
    assert load_train_config(FULL).lora is None


def test_the_ablation_differs_only_in_the_reward(calibrated: Path) -> None:
    main, ablation = _raw(PAPER), _raw(NO_SAFETY)
    assert {k: v for k, v in ablation.items() if k not in PER_RUN | {"reward_weights"}} == {
        k: v for k, v in main.items() if k not in PER_RUN | {"reward_weights"}
    }
    assert main["run_id"] != ablation["run_id"] and main["output_dir"] != ablation["output_dir"]
    ours, theirs = _checked(PAPER).reward, _checked(NO_SAFETY).reward
    assert theirs.ctrs == ours.ctrs  # the same calibrated file
    assert ours.charges_safety and not theirs.charges_safety  # no safety call, no penalty
    assert all(theirs.penalty(j, "critical") == 0.0 for j in safety_label_ids())


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ("penalties=harsh", r"penalties=harsh is not a preset \(known: clinical, therapygym-flat"),
        ("weights=2", "the one option after '\\?' is penalties=<preset>"),
        ("penalties", "the one option after '\\?' is penalties=<preset>"),
    ],
)
def test_a_bad_penalty_option_is_one_line(calibrated: Path, option: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_reward_spec(f"{calibrated}?{option}")
    assert str(calibrated) in str(info.value) and "\n" not in str(info.value)


def test_a_preset_takes_the_penalty_option(calibrated: Path) -> None:
    spec = load_reward_spec("therapygym-flat?penalties=no-safety")
    assert spec.ctrs == load_reward_spec("therapygym-flat").ctrs
    assert not spec.charges_safety
    assert spec.source.endswith("?penalties=no-safety")


def test_the_prime_rl_config_in_the_docs_is_the_shipped_one() -> None:
    """docs/training.md shows configs/prime-rl-qwen3-4b.toml verbatim (tests/rl/
    test_verifiers.py loads its env block the way prime-rl's env server does)."""
    shipped = (CONFIGS / "prime-rl-qwen3-4b.toml").read_text()
    docs = (ROOT / "docs" / "training.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", docs, flags=re.DOTALL)
    assert shipped in blocks
    env = tomllib.loads(shipped)["orchestrator"]["train"]["env"][0]["env"]
    assert env["taskset"]["id"] == "therapygym-verifiers"
