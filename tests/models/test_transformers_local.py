"""The hf: backend's spec and file checks (generation itself runs in tests/rl's slow smoke)."""

from __future__ import annotations

from pathlib import Path

import pytest

from therapygym.errors import ModelNotInstalledError, ModelSpecError
from therapygym.models import load_model
from therapygym.models.spec import parse_spec
from therapygym.models.transformers_local import model_source


def test_spec_carries_the_adapter_into_the_label() -> None:
    config = parse_spec("hf:smollm2?adapter=runs/a")
    assert (config.backend, config.model, config.adapter) == ("hf", "smollm2", "runs/a")
    assert config.label == "hf:smollm2+runs/a"
    assert config.max_concurrency == 1 and config.request_timeout_s == 1800


def test_adapter_is_for_hf_models_only() -> None:
    with pytest.raises(ModelSpecError, match="adapter= applies to hf: models only"):
        parse_spec("gguf:/m.gguf?adapter=runs/a")


def test_model_source_names_what_it_expected(tmp_path: Path) -> None:
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    assert model_source(str(tmp_path / "m.gguf")) == (tmp_path, "m.gguf")
    (tmp_path / "saved").mkdir()
    (tmp_path / "saved" / "config.json").write_text("{}")
    assert model_source(str(tmp_path / "saved")) == (tmp_path / "saved", None)
    with pytest.raises(ModelNotInstalledError, match=r"directory with config\.json"):
        model_source(str(tmp_path / "nothing-here"))


def test_an_adapter_folder_without_weights_is_refused(tmp_path: Path) -> None:
    pytest.importorskip("transformers", reason="the [train] extra is not installed")
    with pytest.raises(ModelNotInstalledError, match=r"adapter_model\.safetensors"):
        load_model(f"hf:smollm2?adapter={tmp_path}")
