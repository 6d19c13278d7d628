"""`therapygym train` config errors: one line naming the file, field or option at fault,
before anything is written to the store."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from therapygym.errors import ConfigError, TherapygymError
from therapygym.rl.train import load_train_config, train
from therapygym.store import RunStore

pytest.importorskip("trl", reason="the [train] extra is not installed")


def _config(tmp_path: Path, **fields: object) -> Path:
    body = {"run_id": "t", "patients": "dep-01-maya", "output_dir": str(tmp_path / "out")}
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump({**body, **fields}))
    return path


def test_unknown_field_names_file_and_field(tmp_path: Path) -> None:
    path = _config(tmp_path, learning_rate=1e-4)
    with pytest.raises(ConfigError) as info:
        load_train_config(path)
    assert str(path) in str(info.value) and "learning_rate" in str(info.value)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"grpo": {"num_generationz": 2}}, "train config: grpo"),
        ({"patient_model": "no-such-model"}, "unknown model spec"),
        ({"patients": "nobody-*"}, "matches no profile"),
    ],
)
def test_bad_settings_fail_before_the_run_is_stored(
    tmp_path: Path, fields: dict, message: str
) -> None:
    store = RunStore(tmp_path / "s.sqlite")
    with pytest.raises(TherapygymError, match=message):
        train(load_train_config(_config(tmp_path, **fields)), store=store, cache=None)
    assert store.runs() == []


def test_reward_penalties_are_checked_before_the_run_is_stored(tmp_path: Path) -> None:
    weights = tmp_path / "w.yaml"
    weights.write_text(yaml.safe_dump({"ctrs": {"agenda": 1.0}, "penalties": "harsh"}))
    store = RunStore(tmp_path / "s.sqlite")
    config = load_train_config(_config(tmp_path, reward_weights=str(weights)))
    with pytest.raises(ConfigError, match=r"field 'reward_weights'.*unknown preset 'harsh'"):
        train(config, store=store, cache=None)
    assert store.runs() == []


def test_a_reward_preset_by_name(tmp_path: Path) -> None:
    from therapygym.rl.train import check_train_config

    inputs = check_train_config(
        load_train_config(_config(tmp_path, reward_weights="therapygym-flat"))
    )
    assert inputs.reward.penalty("crisis_unaddressed", "low") == 1.0
    assert inputs.reward.source.startswith("preset therapygym-flat")
