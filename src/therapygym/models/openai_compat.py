"""Any server that speaks the OpenAI chat-completions API: vLLM, Ollama, llama.cpp server,
hosted APIs. Uses the official async client with its own retries turned off, so the
shared retry policy in `base.py` applies to every backend alike.
"""

from __future__ import annotations

import json
import os
from typing import Any

import httpx2
import openai

from therapygym.errors import MissingAPIKeyError
from therapygym.models.base import BaseChatModel, PermanentError, RawReply, TransientError
from therapygym.models.cache import ResponseCache
from therapygym.models.spec import ModelConfig
from therapygym.models.types import ChatRequest

# The status codes the official client itself treats as retryable, besides 5xx.
_RETRYABLE_STATUS = {408, 409, 429}
# Servers that need no key still require the client to send one.
_NO_KEY = "not-needed"


def _api_key(config: ModelConfig) -> str:
    """Read the key from the environment only; never store it anywhere else."""
    if config.api_key_env:
        key = os.environ.get(config.api_key_env)
        if not key:
            raise MissingAPIKeyError(
                f"model {config.label}: environment variable {config.api_key_env} is not set "
                f"(api_key_env); export it before running"
            )
        return key
    if config.base_url is None:
        key = os.environ.get("OPENAI_API_KEY")
        if not key:
            raise MissingAPIKeyError(
                f"model {config.label}: OPENAI_API_KEY is not set; export it, or give base_url "
                "(and api_key_env if the server needs a key) for another OpenAI-compatible server"
            )
        return key
    return _NO_KEY


def _retry_after(err: openai.APIStatusError) -> float | None:
    value = err.response.headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _server_message(err: openai.APIStatusError) -> str:
    body = err.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:300]
    return err.message[:300]


def _causes(err: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    cur: BaseException | None = err
    while cur is not None and cur not in chain:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    return chain


_NEVER_CONNECTED = {"ConnectError", "ClientConnectorError", "ConnectionRefusedError"}
_TIMEOUTS = {"ReadTimeout", "WriteTimeout", "PoolTimeout", "ConnectTimeout", "TimeoutException"}


def _connection_failure(err: openai.APIConnectionError, where: str) -> tuple[str, bool]:
    """Say what went wrong with a connection, and whether it was never made at all.

    Judged from the chain of causes, by class name: the client's transport (aiohttp,
    httpx, httpx2) maps its errors to other classes on the way up, and not always to the
    right one (a refused or dropped connection can surface as a timeout), so the deepest
    cause decides.
    """
    chain = _causes(err)
    root = chain[-1]
    if {type(e).__name__ for e in chain} & _NEVER_CONNECTED:
        return (
            f"cannot reach {where} (connection refused or no route): "
            "is the server running and is base_url right?"
        ), True
    if isinstance(root, TimeoutError) or type(root).__name__ in _TIMEOUTS:
        return f"request to {where} timed out", False
    detail = f"{type(root).__name__}: {root}"[:200] if str(root) else type(root).__name__
    return f"connection to {where} dropped ({detail})", False


class OpenAICompatModel(BaseChatModel):
    """A chat model behind an OpenAI-compatible HTTP endpoint."""

    def __init__(self, config: ModelConfig, cache: ResponseCache | None = None) -> None:
        super().__init__(config, cache)
        self._client = openai.AsyncOpenAI(
            api_key=_api_key(config),
            base_url=config.base_url,
            max_retries=0,
            timeout=config.request_timeout_s,
            # aiohttp transport: about half the client CPU per call of the default httpx
            # stack under concurrency (docs/benchmarks.md), which matters at 64+ sessions;
            # and keep a connection alive per concurrent call instead of reconnecting.
            http_client=openai.DefaultAioHttpClient(
                limits=httpx2.Limits(
                    max_connections=config.max_concurrency,
                    max_keepalive_connections=config.max_concurrency,
                )
            ),
        )
        self._where = config.base_url or "the OpenAI API"

    @property
    def identity(self) -> str:
        return f"openai:{self.config.model}@{self.config.base_url or 'api.openai.com'}"

    async def _complete(self, request: ChatRequest) -> RawReply:
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": list(request.messages),
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
            "seed": request.seed,
        }
        if request.json_schema is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "response", "schema": request.json_schema, "strict": True},
            }
        try:
            # The client's plain `post` (its documented route for custom requests) rather
            # than `chat.completions.create`: same auth, URL, timeouts and error classes,
            # without re-validating every message of a long history and building typed
            # response objects -- a third of the CPU per call (docs/benchmarks.md).
            data = await self._client.post("/chat/completions", body=body, cast_to=dict[str, Any])
        except openai.APIConnectionError as err:  # includes APITimeoutError
            cause, never_connected = _connection_failure(err, self._where)
            raise TransientError(cause, unreachable=never_connected) from None
        except openai.APIStatusError as err:
            cause = f"HTTP {err.status_code} from {self._where}: {_server_message(err)}"
            if err.status_code in _RETRYABLE_STATUS or err.status_code >= 500:
                raise TransientError(cause, retry_after_s=_retry_after(err)) from None
            raise PermanentError(cause) from None
        except (json.JSONDecodeError, openai.APIResponseValidationError) as err:
            raise TransientError(
                f"malformed response body from {self._where} ({type(err).__name__})"
            ) from None
        return self._reply(data)

    def _reply(self, data: Any) -> RawReply:
        """Read the fields we need from a chat-completion body, checking its shape."""
        try:
            choice = data["choices"][0]
            text = choice["message"].get("content") or ""
            usage = data.get("usage") or {}
            return RawReply(
                text=text,
                prompt_tokens=int(usage.get("prompt_tokens") or 0),
                completion_tokens=int(usage.get("completion_tokens") or 0),
                model=str(data.get("model") or self.config.model),
                finish_reason=choice.get("finish_reason"),
            )
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as err:
            raise TransientError(
                f"malformed response body from {self._where} (not a chat completion: "
                f"{type(err).__name__} {err})"
            ) from None

    async def aclose(self) -> None:
        await self._client.close()
