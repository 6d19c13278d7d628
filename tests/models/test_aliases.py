"""Provider aliases (`openai/gpt-4o`, `vllm/...`): what each becomes, with its variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from therapygym.errors import ModelSpecError
from therapygym.models import load_model
from therapygym.models.aliases import ALIASES, alias_table, expand_alias, is_alias
from therapygym.models.spec import parse_spec, resolve_spec

DOCS = Path(__file__).resolve().parents[2] / "docs" / "hosted-judges.md"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for alias in ALIASES.values():
        for var in (alias.base_url_env, alias.key_env):
            if var:
                monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize(
    ("spec", "backend", "model", "base_url", "key_env"),
    [
        ("openai/gpt-4o", "openai", "gpt-4o", None, None),
        ("anthropic/claude-sonnet-4-5", "anthropic", "claude-sonnet-4-5", None, None),
        ("ollama/llama3.1:8b", "openai", "llama3.1:8b", "http://localhost:11434/v1", None),
        (
            "openrouter/anthropic/claude-3.7-sonnet",
            "openai",
            "anthropic/claude-3.7-sonnet",
            "https://openrouter.ai/api/v1",
            "OPENROUTER_API_KEY",
        ),
        (
            "together/meta-llama/Llama-3.3-70B-Instruct-Turbo",
            "openai",
            "meta-llama/Llama-3.3-70B-Instruct-Turbo",
            "https://api.together.xyz/v1",
            "TOGETHER_API_KEY",
        ),
        (
            "groq/llama-3.3-70b-versatile",
            "openai",
            "llama-3.3-70b-versatile",
            "https://api.groq.com/openai/v1",
            "GROQ_API_KEY",
        ),
    ],
)
def test_each_alias_becomes_its_backend_spec(
    spec: str, backend: str, model: str, base_url: str | None, key_env: str | None
) -> None:
    config = resolve_spec(spec)
    assert (config.backend, config.model, config.base_url, config.api_key_env) == (
        backend,
        model,
        base_url,
        key_env,
    )


def test_vllm_needs_its_address_and_uses_its_key_when_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ModelSpecError) as err:
        parse_spec("vllm/Qwen/Qwen2.5-7B-Instruct")
    assert "VLLM_BASE_URL is not set" in str(err.value) and "\n" not in str(err.value)
    # An address in the spec needs no variable.
    given = parse_spec("vllm/Qwen/Qwen2.5-7B-Instruct?base_url=http://10.0.0.2:8000/v1")
    assert given.base_url == "http://10.0.0.2:8000/v1" and given.api_key_env is None
    monkeypatch.setenv("VLLM_BASE_URL", "http://127.0.0.1:8000/v1")
    config = parse_spec("vllm/Qwen/Qwen2.5-7B-Instruct")
    assert (config.model, config.base_url) == (
        "Qwen/Qwen2.5-7B-Instruct",
        "http://127.0.0.1:8000/v1",
    )
    assert config.api_key_env is None  # no key set: none sent
    monkeypatch.setenv("VLLM_API_KEY", "token-abc")
    assert parse_spec("vllm/Qwen/Qwen2.5-7B-Instruct").api_key_env == "VLLM_API_KEY"


def test_a_base_url_variable_overrides_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_BASE_URL", "http://gpu-box:11434/v1")
    assert parse_spec("ollama/llama3.1").base_url == "http://gpu-box:11434/v1"


def test_options_after_the_question_mark_still_apply_and_win() -> None:
    config = resolve_spec(
        "ollama/qwen2.5:7b?concurrency=3&timeout_s=30&base_url=http://127.0.0.1:9999/v1"
    )
    assert (config.max_concurrency, config.timeout_s) == (3, 30.0)
    assert config.base_url == "http://127.0.0.1:9999/v1"
    assert config.label == "openai:qwen2.5:7b@http://127.0.0.1:9999/v1"
    with pytest.raises(ModelSpecError, match=r"'ollama/m\?concurency=2': unknown option"):
        resolve_spec("ollama/m?concurency=2")


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("bedrock/claude", "unknown provider 'bedrock/'"),
        ("mistral/mistral-large?concurrency=2", "unknown provider 'mistral/'"),
        ("ollama/", "no model after 'ollama/'"),
    ],
)
def test_unknown_or_empty_aliases_are_named(spec: str, fragment: str) -> None:
    with pytest.raises(ModelSpecError) as err:
        resolve_spec(spec)
    message = str(err.value)
    assert fragment in message and "\n" not in message
    if "unknown" in fragment:
        assert all(f"{name}/" in message for name in ALIASES)


@pytest.mark.parametrize(
    ("spec", "alias"),
    [
        ("openai/gpt-4o", True),
        ("ollama/llama3.1:8b", True),
        ("openai:org/model", False),
        ("gguf:/models/q.gguf", False),
        ("hf:/models/dir?adapter=/tmp/lora", False),
        ("/abs/path", False),
        ("local:smollm2", False),
    ],
)
def test_only_a_slash_before_any_colon_is_an_alias(spec: str, alias: bool) -> None:
    assert is_alias(spec) is alias
    if not alias:
        assert expand_alias(spec) == spec


def test_a_models_file_name_with_a_slash_is_still_a_name(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text("models:\n  team/judge: {backend: openai, model: m, base_url: http://h/v1}\n")
    assert resolve_spec("team/judge", path).name == "team/judge"


async def test_an_alias_loads_and_answers(
    openai_server: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = openai_server(["hello back"])  # type: ignore[operator]
    monkeypatch.setenv("VLLM_BASE_URL", server.base_url)
    model = load_model("vllm/Qwen/Qwen2.5-0.5B-Instruct?max_retries=0")
    reply = await model.chat([{"role": "user", "content": "hello"}])
    await model.aclose()
    assert reply.text == "hello back"
    assert server.requests[0]["model"] == "Qwen/Qwen2.5-0.5B-Instruct"


def test_the_docs_show_the_table_as_the_code_has_it() -> None:
    if not DOCS.exists():
        pytest.skip(f"{DOCS.name} is not written yet")
    assert alias_table() in DOCS.read_text()
