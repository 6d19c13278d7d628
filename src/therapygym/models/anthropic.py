"""Anthropic's Messages API, spoken directly: `anthropic:<model>`.

One POST to `{base_url}/v1/messages` through the shared aiohttp path (`models/http.py`),
with the shared retry, cache and usage policy of `base.py`, as `openai_compat.py` does for
chat completions. What differs from chat completions, and is handled here:

- The key goes in `x-api-key` (with `anthropic-version`), read from ANTHROPIC_API_KEY or
  the variable `api_key_env` names, masked in every message and never stored.
- System messages go to the top-level `system` field; the conversation must start with a
  user turn and alternate, so consecutive turns of one role are joined and a conversation
  that starts with the assistant (or has no turn, as when a model speaks first) gets a
  short user turn in front.
- `max_tokens` is required; `temperature` is 0 to 1 (not 0 to 2), and is refused here
  above 1 rather than sent to fail on the server. There is no seed.
- Schema-constrained output is a forced tool call: one tool whose `input_schema` is the
  request's schema and `tool_choice` naming it; the `tool_use` block's `input` comes back
  as the answer's text (JSON), so judges parse it as they parse any other backend's
  answer. Plain (non-strict) tool use takes the full JSON Schema, bounds included, so the
  schema is sent as it is; only its root must be an object, and a schema whose root is
  not is sent wrapped in one and unwrapped from the answer.
- Errors come as `{"type": "error", "error": {"type": ..., "message": ...}}`; 429, 529
  (overloaded) and other 5xx are retried (honouring retry-after), 400/401/403/404/413 are
  not. `stop_reason` becomes the finish reason the rest of the layer knows ("max_tokens"
  -> "length", "end_turn" -> "stop").
- Extended thinking is asked for in `extra_body` (`{"thinking": {"type": "enabled",
  "budget_tokens": 2048}}`), which is merged into every request as for `openai:` models;
  with it on, the API takes no temperature and no forced tool, so neither is sent (the
  tool is offered with `tool_choice: auto`), and its `budget_tokens` is added to the
  request's `max_tokens`, which sizes the answer alone (a judge's is fitted to its JSON).
  Thinking blocks are never the answer: their text is kept apart as the completion's
  `reasoning`. `extra_headers` are sent as for `openai:` models (beta features:
  `anthropic-beta`). `reasoning_effort` and the hosted-strict schema dialect are OpenAI's
  and refused here.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from typing import Any

from yarl import URL

from therapygym.errors import MissingAPIKeyError, ModelSpecError
from therapygym.models.base import BaseChatModel, PermanentError, RawReply, TransientError
from therapygym.models.cache import ResponseCache
from therapygym.models.http import JsonHttpClient, display_url, endpoint_url
from therapygym.models.spec import ModelConfig
from therapygym.models.types import ChatRequest
from therapygym.records import canonical_json

_ANTHROPIC_API = "https://api.anthropic.com"
_API_VERSION = "2023-06-01"
_KEY_ENV = "ANTHROPIC_API_KEY"
_MESSAGE_CHARS = 300
_MAX_TEMPERATURE = 1.0
# The one tool a structured request offers and forces; its input is the answer.
_TOOL = "answer"
_TOOL_DESCRIPTION = "Give your answer: its input is the whole answer, in the required form."
# The key a non-object schema is wrapped under (the tool's input must be an object).
_WRAPPED = "answer"
# What stands in for the first user turn when the conversation has none: the API needs
# one, and this says no more than that the conversation begins.
_OPENING_TURN = "(The conversation begins.)"
# stop_reason -> the finish_reason the rest of the layer (and chat completions) uses.
_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "tool_use": "stop",
    "max_tokens": "length",
    "refusal": "content_filter",
}


def _api_key(config: ModelConfig) -> str:
    """Read the key from the environment only; never store it anywhere else."""
    var = config.api_key_env or _KEY_ENV
    key = os.environ.get(var)
    if not key:
        where = " (api_key_env)" if config.api_key_env else ""
        raise MissingAPIKeyError(
            f"model {config.label}: environment variable {var} is not set{where}; "
            "export it before running"
        )
    return key


def _check_options(config: ModelConfig) -> None:
    """Refuse the options that are OpenAI's, naming what Claude takes instead."""
    if config.reasoning_effort is not None:
        raise ModelSpecError(
            f"model spec {config.label}: reasoning_effort applies to openai: models; for "
            'Claude\'s extended thinking give extra_body={"thinking": {"type": "enabled", '
            '"budget_tokens": 2048}}'
        )
    if config.schema_dialect == "hosted-strict":
        raise ModelSpecError(
            f"model spec {config.label}: schema_dialect=hosted-strict is OpenAI's strict "
            "mode; anthropic: models send the full schema as a tool's input_schema"
        )


def _identity(config: ModelConfig) -> str:
    """The cache identity: model and server, plus the options that change answers
    (extra_body by digest, the names of extra headers; never a header's value)."""
    parts = [f"anthropic:{config.model}@{config.base_url or 'api.anthropic.com'}"]
    if config.extra_body:
        digest = hashlib.sha256(canonical_json(config.extra_body).encode()).hexdigest()[:16]
        parts.append(f"extra_body={digest}")
    if config.extra_headers:
        parts.append(f"headers={','.join(sorted(h.lower() for h in config.extra_headers))}")
    return "|".join(parts)


def _thinking_budget(config: ModelConfig) -> int | None:
    """The thinking budget extra_body sets (0 when thinking is on with no budget, as in
    adaptive thinking); None when thinking is off."""
    thinking = (config.extra_body or {}).get("thinking")
    if not isinstance(thinking, dict) or thinking.get("type") in (None, "disabled"):
        return None
    budget = thinking.get("budget_tokens")
    return budget if isinstance(budget, int) and budget > 0 else 0


def _endpoint(config: ModelConfig) -> URL:
    """`{base_url}/v1/messages`, parsed once. `base_url` is the server's root, as the
    Anthropic SDK takes it; one that already ends in /v1 is not given a second."""
    base = (config.base_url or _ANTHROPIC_API).strip().rstrip("/")
    path = "/messages" if base.endswith("/v1") else "/v1/messages"
    return endpoint_url(config.label, base, path, "https://api.anthropic.com")


def split_messages(
    messages: Iterable[dict[str, str]],
) -> tuple[str | None, list[dict[str, str]]]:
    """(system, turns) for the Messages API: every system message's text joined into the
    top-level system prompt, the other turns joined where one role speaks twice in a row,
    and a user turn in front when the first is the assistant's or there is none."""
    system: list[str] = []
    turns: list[dict[str, str]] = []
    for message in messages:
        role, content = message["role"], message["content"]
        if role == "system":
            system.append(content)
        elif turns and turns[-1]["role"] == role:
            turns[-1] = {"role": role, "content": f"{turns[-1]['content']}\n\n{content}"}
        else:
            turns.append({"role": role, "content": content})
    if not turns or turns[0]["role"] != "user":
        turns.insert(0, {"role": "user", "content": _OPENING_TURN})
    return ("\n\n".join(system) if system else None), turns


def answer_tool(schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """(the tool to force, whether its schema wraps the request's under `answer`)."""
    if schema.get("type") == "object":
        return {"name": _TOOL, "description": _TOOL_DESCRIPTION, "input_schema": schema}, False
    # References point at the root's definitions, so they stay at the wrapper's root.
    inner = {k: v for k, v in schema.items() if k not in ("$defs", "definitions")}
    wrapper: dict[str, Any] = {
        "type": "object",
        "properties": {_WRAPPED: inner},
        "required": [_WRAPPED],
        "additionalProperties": False,
        **{k: schema[k] for k in ("$defs", "definitions") if k in schema},
    }
    return {"name": _TOOL, "description": _TOOL_DESCRIPTION, "input_schema": wrapper}, True


def _error_message(body: bytes) -> str | None:
    """`error.type: error.message` (and the request id, for support) from a Messages API
    error body; None when the body is not one."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    error = data.get("error") if isinstance(data, dict) else None
    if not isinstance(error, dict) or not isinstance(error.get("message"), str):
        return None
    kind = error.get("type")
    text = f"{kind}: {error['message']}" if isinstance(kind, str) else error["message"]
    request_id = data.get("request_id")
    return f"{text} (request_id {request_id})" if isinstance(request_id, str) else text


class AnthropicModel(BaseChatModel):
    """A Claude model (or any server that speaks the Messages API) behind `/v1/messages`."""

    def __init__(self, config: ModelConfig, cache: ResponseCache | None = None) -> None:
        super().__init__(config, cache)
        _check_options(config)
        key = _api_key(config)
        extra = config.header_values()
        self._where = display_url(config.base_url) if config.base_url else "the Anthropic API"
        self._url = _endpoint(config)
        self._http = JsonHttpClient(
            self._where,
            fix="base_url",
            redirect_fix="base_url",
            timeout_s=config.request_timeout_s,
            error_detail=self._server_message,
            headers={
                "x-api-key": key,
                "anthropic-version": _API_VERSION,
                "Accept": "application/json",
                **extra,
            },
            secrets=(key, *extra.values()),
        )
        self._identity = _identity(config)
        self._thinking = _thinking_budget(config)

    @property
    def identity(self) -> str:
        return self._identity

    async def _complete(self, request: ChatRequest) -> RawReply:
        system, turns = split_messages(request.messages)
        body: dict[str, Any] = {
            "model": self.config.model,
            "messages": turns,
            # A caller's max_tokens sizes the answer (a judge's is its JSON's): thinking
            # gets its budget on top, as the API counts both in max_tokens.
            "max_tokens": request.max_tokens + (self._thinking or 0),
        }
        if self._thinking is None:
            if request.temperature > _MAX_TEMPERATURE:
                raise PermanentError(
                    f"temperature {request.temperature:g} is above the Messages API's maximum "
                    f"of {_MAX_TEMPERATURE:g} (its scale is 0 to 1, not 0 to 2 as OpenAI's)"
                )
            body["temperature"] = request.temperature
        if system is not None:
            body["system"] = system
        wrapped = False
        if request.json_schema is not None:
            tool, wrapped = answer_tool(request.json_schema)
            body["tools"] = [tool]
            forced = {"type": "tool", "name": _TOOL}
            body["tool_choice"] = forced if self._thinking is None else {"type": "auto"}
        if self.config.extra_body:
            body.update(self.config.extra_body)
        reply = await self._http.request("POST", self._url, body)
        data = self._http.json_body(reply)
        return self._reply(data, structured=request.json_schema is not None, wrapped=wrapped)

    def _server_message(self, body: bytes) -> str:
        """What an error status quotes: the API's own message, else the body's start."""
        message = _error_message(body)
        if message is None:
            return self._http.excerpt(body) or "(empty body)"
        return self._http.excerpt(message, _MESSAGE_CHARS)

    def _reply(self, data: Any, *, structured: bool, wrapped: bool) -> RawReply:
        """Read the answer from a Messages API body, checking its shape: the answer tool's
        input (as JSON text) for a structured request, else the text blocks; the text of
        thinking blocks is the reasoning, never the answer. A structured request answered
        in text (a refusal, or cut off before the tool call) returns that text, for the
        caller to find unusable."""
        try:
            if data.get("type") != "message":
                raise ValueError(f"type is {data.get('type')!r}, not 'message'")
            blocks = [b for b in data["content"] if isinstance(b, dict)]
            text = "".join(b["text"] for b in blocks if b.get("type") == "text")
            thought = "\n\n".join(b["thinking"] for b in blocks if b.get("type") == "thinking")
            if structured:
                called = [b for b in blocks if b.get("type") == "tool_use"]
                if called and called[0].get("name") == _TOOL:
                    answer = called[0]["input"]
                    if wrapped and isinstance(answer, dict) and _WRAPPED in answer:
                        answer = answer[_WRAPPED]
                    text = json.dumps(answer, ensure_ascii=False)
            usage = data.get("usage") or {}
            # input_tokens excludes prompt-cache reads and writes: the prompt is their sum.
            prompt = sum(
                int(usage.get(field) or 0)
                for field in (
                    "input_tokens",
                    "cache_creation_input_tokens",
                    "cache_read_input_tokens",
                )
            )
            stop = data.get("stop_reason")
            return RawReply(
                text=text,
                reasoning=thought or None,
                prompt_tokens=prompt,
                completion_tokens=int(usage.get("output_tokens") or 0),
                model=str(data.get("model") or self.config.model),
                finish_reason=_FINISH.get(stop, stop),
            )
        except (KeyError, TypeError, AttributeError, ValueError) as err:
            raise TransientError(
                f"malformed response body from {self._where} (not a Messages API reply: "
                f"{type(err).__name__} {err})"
            ) from None

    async def aclose(self) -> None:
        await self._http.aclose()
