"""Any server that speaks the OpenAI chat-completions API: vLLM, Ollama, llama.cpp server,
hosted APIs.

One POST to `{base_url}/chat/completions` through the shared aiohttp path
(`models/http.py`), reading the few fields of the answer the layer needs; the shared retry
policy in `base.py` applies to every backend alike.

This backend used the official `openai` client (its plain `post`, with the aiohttp
transport) until the runner had to keep 64 sessions busy on two cores: measured
sequentially, that client's request path cost about 735 µs of CPU per call and the layer
on it 820 µs, against 170 µs for a bare aiohttp post and 215 µs for the layer now
(docs/benchmarks.md). The request body and the fields read from the answer are the same
as before, and `identity` did not change, so cache keys and results do not change.
Without the official client, the behaviours it gave for free are kept here: the bearer
token (masked in every message), OPENAI_ORG_ID / OPENAI_PROJECT_ID as headers to the
OpenAI API, proxies from the environment, and the server's own error message in
`{"error": {"message": ...}}`. OPENAI_BASE_URL is not read: a server is named by
`base_url`, which is also part of the cache identity.
"""

from __future__ import annotations

import json
import os
from typing import Any

from yarl import URL

from therapygym.errors import MissingAPIKeyError, ModelSpecError
from therapygym.models.base import BaseChatModel, RawReply, TransientError
from therapygym.models.cache import ResponseCache
from therapygym.models.http import JsonHttpClient, display_url
from therapygym.models.spec import ModelConfig
from therapygym.models.types import ChatRequest

_OPENAI_API = "https://api.openai.com/v1"
# Servers that need no key still get a bearer token, as the official client sends one.
_NO_KEY = "not-needed"
_MESSAGE_CHARS = 300
# Sent to the OpenAI API when set, as the official client did (and only there).
_OPENAI_HEADERS = (
    ("OpenAI-Organization", "OPENAI_ORG_ID"),
    ("OpenAI-Project", "OPENAI_PROJECT_ID"),
)


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


def _error_message(body: bytes) -> str | None:
    """The server's own message from an error body: `{"error": {"message": ...}}` (OpenAI,
    vLLM), `{"error": "..."}` (Ollama) or `{"message": ...}`; None when there is none."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    inner = data.get("error", data)
    if isinstance(inner, dict):
        inner = inner.get("message")
    return inner if isinstance(inner, str) and inner.strip() else None


def _endpoint(config: ModelConfig) -> URL:
    """`{base_url}/chat/completions`, parsed once; a base_url that is no URL is refused."""
    base = (config.base_url or _OPENAI_API).strip().rstrip("/")
    try:
        url = URL(f"{base}/chat/completions")
    except (ValueError, TypeError):
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        raise ModelSpecError(
            f"model spec {config.label}: base_url '{display_url(base)}' is not an http:// or "
            "https:// URL with a host (e.g. http://127.0.0.1:8000/v1)"
        )
    return url


class OpenAICompatModel(BaseChatModel):
    """A chat model behind an OpenAI-compatible HTTP endpoint."""

    def __init__(self, config: ModelConfig, cache: ResponseCache | None = None) -> None:
        super().__init__(config, cache)
        key = _api_key(config)
        self._where = display_url(config.base_url) if config.base_url else "the OpenAI API"
        self._url = _endpoint(config)
        headers = {"Authorization": f"Bearer {key}", "Accept": "application/json"}
        if config.base_url is None:
            headers.update(
                {name: value for name, var in _OPENAI_HEADERS if (value := os.environ.get(var))}
            )
        self._http = JsonHttpClient(
            self._where,
            fix="base_url",
            redirect_fix="base_url",
            timeout_s=config.request_timeout_s,
            error_detail=self._server_message,
            headers=headers,
            secrets=() if key == _NO_KEY else (key,),
        )
        self._identity = f"openai:{config.model}@{config.base_url or 'api.openai.com'}"

    @property
    def identity(self) -> str:
        return self._identity

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
        reply = await self._http.request("POST", self._url, body)
        try:
            data = json.loads(reply.body)
        except ValueError as err:
            raise TransientError(
                f"malformed response body from {self._where} ({type(err).__name__}: "
                f"{self._http.excerpt(reply.body, 80) or 'empty body'})"
            ) from None
        return self._reply(data)

    def _server_message(self, body: bytes) -> str:
        """What an error status quotes: the server's own message, else the body's start."""
        message = _error_message(body)
        if message is None:
            return self._http.excerpt(body) or "(empty body)"
        return self._http.excerpt(message, _MESSAGE_CHARS)

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
        await self._http.aclose()
