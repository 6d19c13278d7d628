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

What differs between servers is settled here, per model instance:
- the JSON schema's dialect (`models/dialects.py`): hosted APIs get the strict subset,
  local servers the full schema; a converted answer is restored to the caller's shape;
- reasoning models (o-series, gpt-5, deepseek-reasoner) take `max_completion_tokens` and
  no temperature: a known-model table says so up front, and for any other model the
  server's own 400 about either parameter switches it once, re-sends the request and is
  remembered for the instance (and counted as a fallback in the usage table);
- a reasoning model's thinking (`reasoning_content` / `reasoning` in the message, or a
  `<think>` block at the start of the content) is kept apart from the answer;
- `extra_body` is merged into the request and `extra_headers` sent with it (values
  masked in every message, `${VAR}` read from the environment).
The cache identity adds only what changes answers: reasoning_effort, a digest of
extra_body, the header names, and (for requests with a schema) a non-full dialect; a
default config keeps the identity it always had.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass
from typing import Any

from yarl import URL

from therapygym.errors import MissingAPIKeyError
from therapygym.models.base import (
    BaseChatModel,
    PermanentError,
    RawReply,
    TransientError,
    split_reasoning,
)
from therapygym.models.cache import ResponseCache
from therapygym.models.dialects import SchemaDialectError, WireSchema, resolve_dialect, wire_schema
from therapygym.models.http import JsonHttpClient, display_url, endpoint_url
from therapygym.models.spec import ModelConfig
from therapygym.models.types import ChatRequest
from therapygym.records import canonical_json

logger = logging.getLogger(__name__)

_OPENAI_API = "https://api.openai.com/v1"
# Servers that need no key still get a bearer token, as the official client sends one.
_NO_KEY = "not-needed"
_MESSAGE_CHARS = 300
# Sent to the OpenAI API when set, as the official client did (and only there).
_OPENAI_HEADERS = (
    ("OpenAI-Organization", "OPENAI_ORG_ID"),
    ("OpenAI-Project", "OPENAI_PROJECT_ID"),
)


@dataclass(frozen=True)
class _SamplingParams:
    """How a model takes its sampling parameters."""

    token_param: str = "max_tokens"
    temperature: bool = True


_REASONING = _SamplingParams("max_completion_tokens", temperature=False)
# Models known to refuse `max_tokens` or a temperature, matched on the name after any
# provider prefix (`openai/o3-mini` on OpenRouter). Any other model that refuses them is
# caught by the fallback on its 400.
KNOWN_MODELS: tuple[tuple[re.Pattern[str], _SamplingParams], ...] = (
    (re.compile(r"o[134](-.*)?"), _REASONING),  # o1, o3, o3-mini, o4-mini, dated ones
    (re.compile(r"gpt-5([-.].*)?"), _REASONING),
    # takes max_tokens; ignores a temperature, so none is sent
    (re.compile(r"deepseek-reasoner"), _SamplingParams("max_tokens", temperature=False)),
)


def known_params(model: str) -> _SamplingParams:
    """The sampling parameters `model` takes, from `KNOWN_MODELS` (else the usual ones)."""
    name = model.rsplit("/", 1)[-1].lower()
    return next((p for pattern, p in KNOWN_MODELS if pattern.fullmatch(name)), _SamplingParams())


def _refused_tokens(cause: str) -> bool:
    """A 400 saying `max_tokens` is refused for `max_completion_tokens` (OpenAI, Azure)."""
    return (
        cause.startswith("HTTP 400") and "max_tokens" in cause and "max_completion_tokens" in cause
    )


def _refused_temperature(cause: str) -> bool:
    """A 400 saying this model takes no (or only the default) temperature."""
    lower = cause.lower()
    return (
        cause.startswith("HTTP 400")
        and "temperature" in lower
        and any(w in lower for w in ("unsupported", "not support", "only the default"))
    )


def _identity(config: ModelConfig) -> str:
    """The cache identity: model and server, plus only the options that change answers.
    Header values never enter it (they may be keys); extra_body by digest."""
    parts = [f"openai:{config.model}@{config.base_url or 'api.openai.com'}"]
    if config.reasoning_effort:
        parts.append(f"reasoning_effort={config.reasoning_effort}")
    if config.extra_body:
        digest = hashlib.sha256(canonical_json(config.extra_body).encode()).hexdigest()[:16]
        parts.append(f"extra_body={digest}")
    if config.extra_headers:
        parts.append(f"headers={','.join(sorted(h.lower() for h in config.extra_headers))}")
    return "|".join(parts)


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
    return endpoint_url(config.label, base, "/chat/completions", "http://127.0.0.1:8000/v1")


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
        extra = config.header_values()
        headers.update(extra)
        secrets = [*extra.values(), *([] if key == _NO_KEY else [key])]
        self._http = JsonHttpClient(
            self._where,
            fix="base_url",
            redirect_fix="base_url",
            timeout_s=config.request_timeout_s,
            error_detail=self._server_message,
            headers=headers,
            secrets=secrets,
        )
        self._identity = _identity(config)
        self.dialect = resolve_dialect(config.schema_dialect, config.base_url)
        # Mutable: a refused parameter found by the fallback stays switched for this instance.
        self.sampling = known_params(config.model)

    @property
    def identity(self) -> str:
        return self._identity

    def cache_identity(self, request: ChatRequest) -> str:
        """A schema sent in a dialect other than `full` is another request on the wire, so
        another key; plain chat requests keep the model's identity."""
        if request.json_schema is None or self.dialect == "full":
            return self._identity
        return f"{self._identity}|schema={self.dialect}"

    def _body(self, request: ChatRequest, wire: WireSchema | None) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.config.model, "messages": list(request.messages)}
        if self.sampling.temperature:
            body["temperature"] = request.temperature
        body[self.sampling.token_param] = request.max_tokens
        body["seed"] = request.seed
        if self.config.reasoning_effort:
            body["reasoning_effort"] = self.config.reasoning_effort
        if wire is not None:
            body["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "response", "schema": wire.schema, "strict": True},
            }
        if self.config.extra_body:
            body.update(self.config.extra_body)
        return body

    def _wire(self, request: ChatRequest) -> WireSchema | None:
        if request.json_schema is None:
            return None
        try:
            return wire_schema(self.dialect, request.json_schema)
        except SchemaDialectError as err:
            raise PermanentError(
                f"the JSON schema cannot be sent in the {self.dialect} dialect: {err}"
            ) from None

    def _fallback(self, body: dict[str, Any], cause: str) -> str | None:
        """Switch the parameter a 400 refused (if this request sent it) and say what
        changed; None when the error is no such refusal."""
        if "max_tokens" in body and _refused_tokens(cause):
            self.sampling = _SamplingParams("max_completion_tokens", self.sampling.temperature)
            change = "max_tokens -> max_completion_tokens"
        elif "temperature" in body and _refused_temperature(cause):
            self.sampling = _SamplingParams(self.sampling.token_param, temperature=False)
            change = "temperature not sent"
        else:
            return None
        logger.warning(
            "model %s refused a parameter; %s from now on (remembered for this model)",
            self.spec,
            change,
        )
        return f"{self.config.model}: {change}"

    async def _complete(self, request: ChatRequest) -> RawReply:
        wire = self._wire(request)
        fallbacks: list[str] = []
        while True:  # each fallback switches one parameter once, so at most two
            body = self._body(request, wire)
            try:
                reply = await self._http.request("POST", self._url, body)
                break
            except PermanentError as err:
                change = self._fallback(body, err.cause)
                if change is None or change in fallbacks:  # extra_body may force it back
                    raise
                fallbacks.append(change)
        data = self._http.json_body(reply)
        raw = self._reply(data)
        if wire is not None:
            raw.text = wire.restore(raw.text)
        raw.fallbacks = tuple(fallbacks)
        return raw

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
            message = choice["message"]
            text, thought = split_reasoning(message.get("content") or "")
            given = message.get("reasoning_content") or message.get("reasoning")
            reasoning = [r for r in (given if isinstance(given, str) else None, thought) if r]
            usage = data.get("usage") or {}
            return RawReply(
                text=text,
                reasoning="\n\n".join(reasoning) or None,
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
