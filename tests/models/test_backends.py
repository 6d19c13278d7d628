"""The backend registry: lookups, a plug-in backend from an entry point, lazy imports."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest

from therapygym.errors import ModelSpecError
from therapygym.models import load_model
from therapygym.models.backends import BACKENDS, Backend
from therapygym.models.spec import parse_spec, resolve_spec
from therapygym.registry import UnknownEntryError

BUILT_IN = ("openai", "anthropic", "local", "gguf", "python", "http", "hf")

PLUGIN = """
from therapygym.models.backends import Backend
from therapygym.models.base import BaseChatModel, RawReply


class EchoModel(BaseChatModel):
    @property
    def identity(self) -> str:
        return f"echo:{self.config.model}"

    async def _complete(self, request):
        said = request.messages[-1]["content"]
        return RawReply(text=f"{self.config.model}: {said}", model=self.config.model)


BACKEND = Backend("echo", EchoModel, "echo:<prefix>", "says it back", default_concurrency=2)
"""


@pytest.fixture
def echo_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An installed package's entry point `echo = echo_plugin:BACKEND` in the group
    `therapygym.backends`, without installing anything: the module goes on sys.path and
    the registry, reset to its built-ins, sees the entry point when it next looks."""
    (tmp_path / "echo_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    point = EntryPoint("echo", "echo_plugin:BACKEND", "therapygym.backends")

    def entry_points(*, group: str) -> list[EntryPoint]:
        return [point] if group == "therapygym.backends" else []

    monkeypatch.setattr("therapygym.registry.entry_points", entry_points)
    monkeypatch.setattr(BACKENDS, "_entries", {n: BACKENDS.get(n) for n in BUILT_IN})
    monkeypatch.setattr(BACKENDS, "_plugins_loaded", False)


def test_every_built_in_backend_has_a_description_and_a_spec_form() -> None:
    assert tuple(BACKENDS.names()) == BUILT_IN
    for name in BUILT_IN:
        backend = BACKENDS.get(name)
        assert backend.name == name and backend.usage.startswith(f"{name}:")
        assert backend.description and backend.default_concurrency >= 1


def test_an_unknown_backend_names_the_known_ones() -> None:
    with pytest.raises(UnknownEntryError) as err:
        BACKENDS.get("azure")
    assert str(err.value) == f"unknown backend 'azure' (known: {', '.join(BUILT_IN)})"


def test_a_plug_in_backend_is_a_spec_like_any_other(echo_plugin: None) -> None:
    config = parse_spec("echo:bot?concurrency=3")
    assert (config.backend, config.model, config.max_concurrency) == ("echo", "bot", 3)
    assert parse_spec("echo:bot").max_concurrency == 2  # its own default
    with pytest.raises(ModelSpecError, match=r"echo:<prefix>, or a name from a models file"):
        resolve_spec("nope:x")
    reply = load_model("echo:bot").chat([{"role": "user", "content": "hello"}])
    assert asyncio.run(reply).text == "bot: hello"


def test_a_models_file_may_name_a_plug_in_backend(echo_plugin: None, tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text("models:\n  mine: {backend: echo, model: bot}\n")
    assert resolve_spec("mine", path).backend == "echo"
    path.write_text("models:\n  mine: {backend: ehco, model: bot}\n")
    with pytest.raises(Exception, match="'python', 'http', 'hf' or 'echo'"):
        resolve_spec("mine", path)


def test_a_target_check_belongs_to_its_backend() -> None:
    seen: list[tuple[str, str]] = []
    backend = Backend("x", "m:C", "x:<t>", "d", 1, check=lambda s, t: seen.append((s, t)))
    backend.check_target("x:t", "t")
    assert seen == [("x:t", "t")]


def test_importing_the_package_imports_no_backend() -> None:
    """`import therapygym` and `import therapygym.models` stay light: the backends'
    heavy libraries load only when a spec needs them."""
    code = textwrap.dedent(
        """
        import sys
        import therapygym, therapygym.models, therapygym.therapists
        from therapygym.models.spec import parse_spec
        parse_spec("hf:smollm2"); parse_spec("local:smollm2")
        heavy = ("xllamacpp", "torch", "transformers", "trl", "peft", "aiohttp")
        print(sorted(m for m in sys.modules if m.split(".")[0] in heavy))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"
