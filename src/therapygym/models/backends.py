"""The model backends by name: what a spec's `<backend>:` prefix picks.

Each backend is a light `Backend` record (how its specs read, what it is, its defaults)
that names its model class by a `"module:Class"` path, imported only when a spec needs it:
`import therapygym.models` never imports aiohttp, llama.cpp, torch or transformers.

A new backend is a model class (a `BaseChatModel` subclass taking `(config, cache)`) plus
one `BACKENDS.register(...)` line below; a third-party package instead declares an entry
point in the group `therapygym.backends` whose value is its `Backend` record:

    [project.entry-points."therapygym.backends"]
    mybot = "mypackage.backend:BACKEND"   # Backend("mybot", "mypackage.model:Bot", ...)

after which `mybot:<target>` is a model spec like any other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from therapygym.errors import ModelSpecError
from therapygym.registry import Registry, load_target

if TYPE_CHECKING:
    from therapygym.models.base import BaseChatModel


@dataclass(frozen=True)
class Backend:
    """One backend: everything spec parsing, `models list` and the therapist loader need to
    know about it without importing its model class."""

    name: str
    model: str | type[BaseChatModel]  # the class, or "module:Class" imported on first use
    usage: str  # the spec form, as help and errors show it
    description: str  # one line for `models list`
    # requests in flight when the spec gives no concurrency=; a run raises it to its own
    # concurrency unless the backend is in_process (ModelConfig.limit_for)
    default_concurrency: int
    in_process: bool = False  # runs on this machine's cores, not behind a server
    chatbot: bool = False  # a whole chatbot already: gets no default therapist prompt
    adapter: bool = False  # accepts adapter= (a LoRA folder) and chat_template_kwargs=
    slots: bool = False  # accepts slots= (llama.cpp slots, each caching a prompt)
    check: Callable[[str, str], None] | None = None  # (spec, target): raise on a bad target
    status: str | None = None  # "module:function" -> a line on whether it can run here

    def model_class(self) -> type[BaseChatModel]:
        """The model class, imported now if it was named by path."""
        return load_target(self.model) if isinstance(self.model, str) else self.model

    def check_target(self, spec: str, target: str) -> None:
        """Refuse a target this backend cannot use, naming the spec and the fix."""
        if self.check is not None:
            self.check(spec, target)


def _embedded_only(spec: str, target: str) -> None:
    if target != "smollm2":
        raise ModelSpecError(
            f"unknown embedded model '{target}' in '{spec}': the embedded model is local:smollm2; "
            "use gguf:/path/to/file.gguf for another local model"
        )


def _module_function(spec: str, target: str) -> None:
    if ":" not in target:
        raise ModelSpecError(f"model spec '{spec}': expected python:module:function")


BACKENDS: Registry[Backend] = Registry("backend", group="therapygym.backends")


def _register(*backends: Backend) -> None:
    for entry in backends:
        BACKENDS.register(entry.name, entry)


_register(
    Backend(
        "openai",
        "therapygym.models.openai_compat:OpenAICompatModel",
        "openai:<model>",
        "OpenAI, or any compatible server with ?base_url=... (vLLM, SGLang, Ollama)",
        default_concurrency=16,
    ),
    Backend(
        "anthropic",
        "therapygym.models.anthropic:AnthropicModel",
        "anthropic:<model>",
        "Claude through Anthropic's Messages API (ANTHROPIC_API_KEY)",
        default_concurrency=16,
    ),
    Backend(
        "local",
        "therapygym.models.llamacpp:LlamaCppModel",
        "local:smollm2",
        "embedded SmolLM2-135M-Instruct (offline)",
        default_concurrency=4,
        in_process=True,
        slots=True,
        check=_embedded_only,
        status="therapygym.models.llamacpp:embedded_status",
    ),
    Backend(
        "gguf",
        "therapygym.models.llamacpp:LlamaCppModel",
        "gguf:/path/file.gguf",
        "any GGUF file, in-process llama.cpp",
        default_concurrency=4,
        in_process=True,
        slots=True,
    ),
    Backend(
        "python",
        "therapygym.models.callable:CallableModel",
        "python:module:function",
        "your own callable",
        default_concurrency=8,
        chatbot=True,
        check=_module_function,
    ),
    Backend(
        "http",
        "therapygym.models.http_chatbot:HttpChatbotModel",
        "http:/path/to/bot.yaml",
        "any HTTP chatbot, mapped by a YAML file",
        default_concurrency=16,
        chatbot=True,
    ),
    Backend(
        "hf",
        "therapygym.models.transformers_local:TransformersModel",
        "hf:<dir|file.gguf|smollm2>",
        "a local transformers model (+ adapter=DIR, a LoRA folder), with the train extra",
        default_concurrency=1,
        in_process=True,
        adapter=True,
    ),
)


def spec_help() -> str:
    """What a spec may be, for errors: every backend's form (plug-ins included)."""
    forms = [BACKENDS.get(name).usage for name in BACKENDS.names()]
    return f"expected {', '.join(forms)}, or a name from a models file"
