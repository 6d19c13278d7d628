"""The model layer: the only place in therapygym that talks to LLMs.

model = load_model("local:smollm2")
reply = await model.chat([{"role": "user", "content": "Hello"}], max_tokens=32)
"""

from __future__ import annotations

from pathlib import Path

from therapygym.models.backends import BACKENDS, Backend
from therapygym.models.base import BaseChatModel
from therapygym.models.cache import ResponseCache
from therapygym.models.spec import ModelConfig, resolve_spec
from therapygym.models.types import ChatModel, Completion, Message
from therapygym.models.usage import AccountedModel, UsageLedger

__all__ = [
    "BACKENDS",
    "AccountedModel",
    "Backend",
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
    return BACKENDS.get(config.backend).model_class()(config, cache)
