"""The model layer: the only place in therapygym that talks to LLMs.

model = load_model("local:smollm2")
reply = await model.chat([{"role": "user", "content": "Hello"}], max_tokens=32)
"""

from __future__ import annotations

from pathlib import Path

from therapygym.models.base import BaseChatModel
from therapygym.models.cache import ResponseCache
from therapygym.models.spec import ModelConfig, resolve_spec
from therapygym.models.types import ChatModel, Completion, Message
from therapygym.models.usage import AccountedModel, UsageLedger

__all__ = [
    "AccountedModel",
    "BaseChatModel",
    "ChatModel",
    "Completion",
    "Message",
    "ModelConfig",
    "ResponseCache",
    "UsageLedger",
    "load_model",
]


def load_model(
    spec: str | ModelConfig,
    *,
    cache: ResponseCache | None = None,
    models_file: Path | str | None = None,
) -> BaseChatModel:
    """Build the backend a spec names. Pass `cache=None` to disable caching.

    Raises a `TherapygymError` with a one-line fix for unknown specs, missing keys,
    missing model files and unimportable callables.
    """
    config = resolve_spec(spec, models_file)
    if config.backend == "openai":
        from therapygym.models.openai_compat import OpenAICompatModel

        return OpenAICompatModel(config, cache)
    if config.backend in ("local", "gguf"):
        from therapygym.models.llamacpp import LlamaCppModel

        return LlamaCppModel(config, cache)
    if config.backend == "hf":
        from therapygym.models.transformers_local import TransformersModel

        return TransformersModel(config, cache)
    if config.backend == "http":
        from therapygym.models.http_chatbot import HttpChatbotModel

        return HttpChatbotModel(config, cache)
    from therapygym.models.callable import CallableModel

    return CallableModel(config, cache)
