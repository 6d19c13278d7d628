"""A user's own Python function as a model: `python:package.module:function`.

The function receives the messages and whichever of `temperature`, `max_tokens`, `seed`,
`json_schema` its signature names (all of them if it takes **kwargs). It may be sync or
async and may return a string, a `Completion`, or a mapping with `text` and optional
`prompt_tokens` / `completion_tokens`. Sync functions run in a worker thread so a slow
one does not stall other sessions.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from therapygym.errors import ModelSpecError
from therapygym.models.base import BaseChatModel, PermanentError, RawReply, TransientError
from therapygym.models.cache import ResponseCache
from therapygym.models.spec import ModelConfig
from therapygym.models.types import ChatRequest, Completion

_PARAMS = ("temperature", "max_tokens", "seed", "json_schema")


def import_callable(target: str, label: str) -> Callable[..., Any]:
    """Import `module:function` (dots allowed in both parts) with a clear error."""
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ModelSpecError(
            f"model spec {label}: cannot import module '{module_name}' ({err}); "
            "is it installed or on PYTHONPATH?"
        ) from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ModelSpecError(f"model spec {label}: module '{module_name}' has no '{attr}'")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ModelSpecError(f"model spec {label}: '{attr}' is not callable")
    return obj


def _accepted(fn: Callable[..., Any]) -> tuple[str, ...]:
    params = inspect.signature(fn).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return _PARAMS
    names = {p.name for p in params}
    return tuple(n for n in _PARAMS if n in names)


class CallableModel(BaseChatModel):
    """Wraps a Python callable in the shared cache / retry / concurrency policy."""

    def __init__(self, config: ModelConfig, cache: ResponseCache | None = None) -> None:
        super().__init__(config, cache)
        self._fn = import_callable(config.model, config.label)
        self._accepted = _accepted(self._fn)

    @property
    def identity(self) -> str:
        return f"python:{self.config.model}"

    async def _complete(self, request: ChatRequest) -> RawReply:
        messages = [dict(m) for m in request.messages]
        kwargs = {name: getattr(request, name) for name in self._accepted}
        try:
            if inspect.iscoroutinefunction(self._fn):
                result = await self._fn(messages, **kwargs)
            else:
                result = await asyncio.to_thread(self._fn, messages, **kwargs)
        except (TimeoutError, ConnectionError) as err:
            raise TransientError(f"{type(err).__name__}: {err}") from None
        except Exception as err:
            raise PermanentError(
                f"{self.config.model} raised {type(err).__name__}: {err}"
            ) from None
        return self._to_reply(result)

    def _to_reply(self, result: Any) -> RawReply:
        if isinstance(result, str):
            return RawReply(text=result, model=self.config.model)
        if isinstance(result, Completion):
            return RawReply(
                text=result.text,
                prompt_tokens=result.prompt_tokens,
                completion_tokens=result.completion_tokens,
                model=result.model,
                finish_reason=result.finish_reason,
            )
        if isinstance(result, Mapping) and isinstance(result.get("text"), str):
            return RawReply(
                text=result["text"],
                prompt_tokens=int(result.get("prompt_tokens", 0)),
                completion_tokens=int(result.get("completion_tokens", 0)),
                model=str(result.get("model", self.config.model)),
            )
        raise PermanentError(
            f"{self.config.model} returned {type(result).__name__}; expected str, Completion, "
            "or a mapping with a 'text' string"
        )
