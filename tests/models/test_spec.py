"""Spec strings and models files: what parses, and the one-line errors for what does not."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import quote

import pytest

from therapygym.errors import ConfigError, ModelSpecError
from therapygym.models.spec import (
    ModelConfig,
    Price,
    load_models_file,
    parse_spec,
    resolve_spec,
)


def test_openai_spec_with_options() -> None:
    cfg = parse_spec(
        "openai:llama3.1:8b?base_url=http://127.0.0.1:11434/v1&concurrency=3&timeout_s=9.5"
    )
    assert cfg.backend == "openai"
    assert cfg.model == "llama3.1:8b"  # Ollama tags keep their colon
    assert cfg.base_url == "http://127.0.0.1:11434/v1"
    assert cfg.max_concurrency == 3
    assert cfg.timeout_s == 9.5
    assert cfg.label == "openai:llama3.1:8b@http://127.0.0.1:11434/v1"


@pytest.mark.parametrize(
    ("spec", "backend", "model", "concurrency"),
    [
        ("local:smollm2", "local", "smollm2", 4),
        ("gguf:/models/q.gguf", "gguf", "/models/q.gguf", 4),
        ("python:my.module:reply", "python", "my.module:reply", 8),
        ("openai:gpt-4o-mini", "openai", "gpt-4o-mini", 16),
    ],
)
def test_backends_and_default_concurrency(
    spec: str, backend: str, model: str, concurrency: int
) -> None:
    cfg = parse_spec(spec)
    assert (cfg.backend, cfg.model, cfg.max_concurrency) == (backend, model, concurrency)


def test_slots_are_kept_apart_from_concurrency_and_the_label() -> None:
    cfg = parse_spec("local:smollm2?slots=8")
    assert (cfg.slots, cfg.max_concurrency, cfg.label) == (8, 4, "local:smollm2")
    assert parse_spec("local:smollm2").slots is None


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("gpt4", "unknown model spec 'gpt4'"),
        ("azure:gpt", "unknown model spec 'azure:gpt'"),
        ("openai:", "unknown model spec 'openai:'"),
        ("local:llama", "the embedded model is local:smollm2"),
        ("python:justamodule", "expected python:module:function"),
        ("openai:m?concurency=2", "unknown option(s) concurency"),
        ("openai:m?timeout_s=fast", "field 'timeout_s'"),
        ("openai:m?concurrency=0", "field 'concurrency'"),
        ("local:smollm2?slots=0", "field 'slots'"),
        ("local:smollm2?slots=many", "field 'slots'"),
        ("openai:m?slots=8", "slots= applies to local: and gguf: models only"),
    ],
)
def test_bad_specs_name_the_problem(spec: str, fragment: str) -> None:
    with pytest.raises(ModelSpecError) as err:
        resolve_spec(spec)
    message = str(err.value)
    assert fragment in message
    assert "\n" not in message


def test_models_file_entries_and_prices(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(
        "models:\n"
        "  judge:\n"
        "    backend: openai\n"
        "    model: Qwen/Qwen2.5-7B-Instruct\n"
        "    base_url: http://127.0.0.1:8000/v1\n"
        "    api_key_env: VLLM_KEY\n"
        "    concurrency: 32\n"
        "prices:\n"
        "  gpt-4o-mini: {input_per_mtok: 0.15, output_per_mtok: 0.6}\n"
    )
    judge = resolve_spec("judge", path)
    assert judge.name == "judge" and judge.label == "judge"
    assert judge.api_key_env == "VLLM_KEY" and judge.max_concurrency == 32
    priced = resolve_spec("openai:gpt-4o-mini", path)
    assert priced.price == Price(input_per_mtok=0.15, output_per_mtok=0.6)
    assert priced.price.cost(1_000_000, 500_000) == pytest.approx(0.45)


def test_models_file_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("models:\n  mine: {backend: local, model: smollm2, concurrency: 2}\n")
    monkeypatch.setenv("THERAPYGYM_MODELS", str(path))
    assert resolve_spec("mine").max_concurrency == 2


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("", "is empty"),
        ("models: [\n", "invalid YAML at line"),
        ("modles: {}\n", "unknown field 'modles'"),
        ("models:\n  j: {backend: openai}\n", "model 'j': field 'model' is missing"),
        ("models:\n  j: {backend: azure, model: x}\n", "model 'j': field 'backend'"),
        ("models:\n  j: {backend: openai, model: x, retries: 3}\n", "unknown field 'retries'"),
        ("prices:\n  m: {input_per_mtok: -1}\n", "field 'prices.m.input_per_mtok'"),
    ],
)
def test_bad_models_files_name_file_and_field(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError) as err:
        resolve_spec("anything", path)
    assert str(path) in str(err.value)
    assert fragment in str(err.value)


def test_missing_models_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        resolve_spec("x", tmp_path / "nope.yaml")


def test_config_passes_through() -> None:
    cfg = ModelConfig(backend="local", model="smollm2")
    assert resolve_spec(cfg) is cfg


# -- issue 21: dialect, reasoning and request options ----------------------------------------


def test_request_options_from_a_spec_string() -> None:
    body = '{"chat_template_kwargs": {"enable_thinking": false}}'
    config = parse_spec(
        "openai:qwen3?base_url=http://127.0.0.1:8000/v1&schema_dialect=full"
        f"&reasoning_effort=low&extra_body={quote(body)}"
        f"&extra_headers={quote(json.dumps({'X-Key': '${GW_KEY}'}))}"
    )
    assert config.schema_dialect == "full" and config.reasoning_effort == "low"
    assert config.extra_body == {"chat_template_kwargs": {"enable_thinking": False}}
    assert config.extra_headers is not None
    assert config.extra_headers["X-Key"].get_secret_value() == "${GW_KEY}"
    assert parse_spec("openai:gpt-4o").schema_dialect == "auto"


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ("extra_body={bad", "option extra_body is not valid JSON"),
        ("extra_body=[1]", "option extra_body must be a JSON object"),
        ("extra_body=" + quote('{"model": "x"}'), "may not set model"),
        ("extra_headers=" + quote('{"X-Key": "sk-literal-1234"}'), "must be a ${VAR} reference"),
        ("schema_dialect=strict", "schema_dialect"),
        ("reasoning_effort=max", "reasoning_effort"),
    ],
)
def test_bad_request_options_in_a_spec_string(options: str, says: str) -> None:
    with pytest.raises(ModelSpecError, match=re.escape(says)) as caught:
        parse_spec(f"openai:m?{options}")
    assert "sk-literal-1234" not in str(caught.value)


def test_bad_extra_headers_in_a_models_file_never_quote_a_value(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(
        "models:\n  m:\n    backend: openai\n    model: m\n"
        "    extra_headers: {'bad name': sk-literal-1234}\n"
    )
    with pytest.raises(ConfigError, match="not an HTTP header name") as caught:
        load_models_file(path)
    assert "sk-literal-1234" not in str(caught.value)
