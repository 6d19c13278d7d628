"""Any HTTP chatbot, through a request/response JSON mapping: `http:/path/to/bot.yaml`.

For a deployed bot that does not speak the OpenAI API. The YAML file says where to send
the conversation, in what shape, and where the reply is in the answer:

    name: clinic-bot                           # optional; the reported model name
    url: http://127.0.0.1:5000/api/chat        # required
    method: POST                               # POST (default) or PUT
    headers:                                   # optional; {env:VAR} is read at load time
      Authorization: "Bearer {env:BOT_TOKEN}"
    request:                                   # the JSON body template, any JSON structure
      message: "{last_user}"
      history: "{messages}"                    # exactly one placeholder: the JSON value
      system: "{system}"
    response_path: data.reply.text             # JMESPath selecting the reply string
    usage_paths:                               # optional JMESPath for token counts
      prompt_tokens: usage.input
      completion_tokens: usage.output

Placeholders in the template's strings: `{messages}` (the conversation as a list of
{role, content} without system messages), `{messages_with_system}`, `{last_user}`,
`{system}` (system prompt(s), or ""), `{temperature}`, `{max_tokens}`, `{seed}`. A string
that is exactly one placeholder becomes the value itself (a list, a string or a number);
inside a longer string, values are inserted as text (lists and numbers as JSON).
Substitution is a single pass, so braces in the conversation are sent as they are.

Header values are secrets: they never appear in the identity (the cache key), in errors
or in logs, and server text quoted in errors has them masked. Requests go through the
shared aiohttp path in `models/http.py`, as `openai:` models' do.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Any, Literal

import jmespath
import jmespath.exceptions
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError
from yarl import URL

from therapygym.errors import (
    ConfigError,
    MissingAPIKeyError,
    ModelSpecError,
)
from therapygym.models.base import BaseChatModel, PermanentError, RawReply, TransientError
from therapygym.models.cache import ResponseCache
from therapygym.models.http import JsonHttpClient, display_url
from therapygym.models.spec import ModelConfig
from therapygym.models.types import ChatRequest
from therapygym.records import short_fingerprint
from therapygym.yamlfile import read_yaml_model

PLACEHOLDERS: tuple[str, ...] = (
    "messages",
    "messages_with_system",
    "last_user",
    "system",
    "temperature",
    "max_tokens",
    "seed",
)
_CONVERSATION = {"messages", "messages_with_system", "last_user"}
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_ENV_REF = re.compile(r"\{env:([A-Za-z_][A-Za-z0-9_]*)\}")
_ENV_START = re.compile(r"\{env:")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def _json_problem(value: Any, where: str) -> str | None:
    """Where `value` stops being plain JSON (YAML also allows dates, int keys...)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{where}: key {key!r} is not a string"
            if problem := _json_problem(item, f"{where}.{key}"):
                return problem
        return None
    if isinstance(value, list):
        for i, item in enumerate(value):
            if problem := _json_problem(item, f"{where}.{i}"):
                return problem
        return None
    if value is None or isinstance(value, str | bool | int):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{where}: {value} is not a JSON number"
    return f"{where}: {type(value).__name__} is not a JSON value"


def _placeholders(value: Any, where: str) -> list[tuple[str, str]]:
    """Every (placeholder name, location) in the template's strings."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _placeholders(v, f"{where}.{k}")]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _placeholders(v, f"{where}.{i}")]
    if isinstance(value, str):
        return [(m.group(1), where) for m in _PLACEHOLDER.finditer(value)]
    return []


def _invalid(message: str) -> PydanticCustomError:
    """A validation error whose text is `message` exactly (no template expansion)."""
    return PydanticCustomError("invalid", message)


def _check_jmespath(value: str) -> str:
    try:
        jmespath.compile(value)
    except jmespath.exceptions.JMESPathError as err:
        detail = getattr(err, "msg", None) or str(err).splitlines()[0]
        at = getattr(err, "lex_position", None)
        where = f" at column {at}" if isinstance(at, int) else ""
        raise _invalid(f"not a valid JMESPath expression{where} ({detail})") from None
    return value


class UsagePaths(BaseModel):
    """JMESPath expressions for the token counts; either may be left out."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prompt_tokens: str | None = None
    completion_tokens: str | None = None

    @field_validator("prompt_tokens", "completion_tokens")
    @classmethod
    def _valid_path(cls, value: str | None) -> str | None:
        return None if value is None else _check_jmespath(value)


class HttpChatbotConfig(BaseModel):
    """A chatbot file, validated. Header values stay as written: `{env:VAR}` is resolved
    by `resolve_headers`, so this object never holds a secret taken from the environment."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str | None = Field(None, min_length=1)
    url: str
    method: Literal["POST", "PUT"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    request: Any = Field(description="The JSON body template.")
    response_path: str = Field(min_length=1)
    usage_paths: UsagePaths | None = None

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        try:
            url = URL(value.strip())
        except (ValueError, TypeError):
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            raise _invalid(
                f"expected an http:// or https:// URL with a host, got '{display_url(value)}'"
            )
        return value.strip()

    @field_validator("method", mode="before")
    @classmethod
    def _upper_method(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("headers")
    @classmethod
    def _valid_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for key, text in value.items():
            if not _HEADER_NAME.match(key):
                raise _invalid(f"'{key}' is not a valid header name")
            if "\r" in text or "\n" in text:
                raise _invalid(f"the value of '{key}' contains a line break")
            if len(_ENV_START.findall(text)) != len(_ENV_REF.findall(text)):
                raise _invalid(
                    f"the value of '{key}' has a malformed {{env:VAR}} reference "
                    "(VAR: letters, digits, underscores)"
                )
        return value

    @field_validator("request")
    @classmethod
    def _valid_template(cls, value: Any) -> Any:
        if problem := _json_problem(value, "request"):
            raise _invalid(f"not plain JSON ({problem})")
        found = _placeholders(value, "request")
        for name, where in found:
            if name not in PLACEHOLDERS:
                known = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
                raise _invalid(f"unknown placeholder '{{{name}}}' in {where} (known: {known})")
        if not {name for name, _ in found} & _CONVERSATION:
            raise _invalid(
                "the template never sends the conversation: put '{last_user}', "
                "'{messages}' or '{messages_with_system}' where the bot expects it"
            )
        return value

    @field_validator("response_path")
    @classmethod
    def _valid_response_path(cls, value: str) -> str:
        return _check_jmespath(value)

    def resolve_headers(self, where: str = "chatbot file") -> dict[str, str]:
        """The headers with `{env:VAR}` read from the environment now.

        Raises `MissingAPIKeyError` naming the variable (never a value) when one is unset.
        """
        resolved: dict[str, str] = {}
        for key, text in self.headers.items():
            for var in _ENV_REF.findall(text):
                if not os.environ.get(var):
                    raise MissingAPIKeyError(
                        f"{where}: header '{key}' uses {{env:{var}}}, but environment "
                        f"variable {var} is not set; export it before running"
                    )
            resolved[key] = _ENV_REF.sub(lambda m: os.environ[m.group(1)], text)
        return resolved

    def mapping_digest(self) -> str:
        """12 hex of sha256 over everything that shapes a reply, except the headers."""
        mapping = {
            "method": self.method,
            "request": self.request,
            "response_path": self.response_path,
            "usage_paths": self.usage_paths.model_dump() if self.usage_paths else None,
        }
        return short_fingerprint(mapping)


def load_http_config(path: Path | str) -> HttpChatbotConfig:
    """Read and validate a chatbot file; every error is one line naming the file and field."""
    p = Path(path).expanduser()
    return read_yaml_model(p, "chatbot file", HttpChatbotConfig, ConfigError)


def _render(template: Any, values: dict[str, Any]) -> Any:
    """Substitute placeholders in one pass; inserted text is never scanned again."""
    if isinstance(template, dict):
        return {k: _render(v, values) for k, v in template.items()}
    if isinstance(template, list):
        return [_render(v, values) for v in template]
    if not isinstance(template, str):
        return template
    whole = _PLACEHOLDER.fullmatch(template)
    if whole:
        return json.loads(json.dumps(values[whole.group(1)]))  # a fresh copy

    def text(match: re.Match[str]) -> str:
        value = values[match.group(1)]
        return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)

    return _PLACEHOLDER.sub(text, template)


def placeholder_values(request: ChatRequest) -> dict[str, Any]:
    """What each placeholder stands for in `request`."""
    every = [{"role": m["role"], "content": m["content"]} for m in request.messages]
    return {
        "messages": [m for m in every if m["role"] != "system"],
        "messages_with_system": every,
        "last_user": next((m["content"] for m in reversed(every) if m["role"] == "user"), ""),
        "system": "\n\n".join(m["content"] for m in every if m["role"] == "system"),
        "temperature": request.temperature,
        "max_tokens": request.max_tokens,
        "seed": request.seed,
    }


_TYPE_NAMES = {
    bool: "a boolean",
    int: "an int",
    float: "a float",
    list: "a list",
    dict: "an object",
    str: "a string",
}


def _type_name(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), f"a {type(value).__name__}")


def _count(value: Any) -> int:
    if isinstance(value, bool):
        return 0
    if isinstance(value, int | float) and math.isfinite(value):
        return max(0, int(value))
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return 0


class HttpChatbotModel(BaseChatModel):
    """A chatbot behind any JSON-over-HTTP endpoint, mapped by a YAML file."""

    def __init__(self, config: ModelConfig, cache: ResponseCache | None = None) -> None:
        if config.base_url or config.api_key_env:
            raise ModelSpecError(
                f"model spec {config.label}: base_url and api_key_env do not apply to http: "
                "models; set url and headers (with {env:VAR}) in the chatbot file"
            )
        if config.model.startswith("//"):
            raise ModelSpecError(
                f"model spec {config.label}: http: takes the path of a chatbot YAML file "
                "(url, request, response_path), not a URL"
            )
        super().__init__(config, cache)
        self.path = Path(config.model).expanduser()
        self.bot = load_http_config(self.path)
        resolved = self.bot.resolve_headers(f"chatbot file {self.path}")
        default = (
            {} if any(k.lower() == "accept" for k in resolved) else {"Accept": "application/json"}
        )
        # Masked in any server text quoted in an error: every value the user set (a token
        # may be written inline) and every value read from the environment.
        env_values = {
            os.environ[var] for text in self.bot.headers.values() for var in _ENV_REF.findall(text)
        }
        self._where = display_url(self.bot.url)
        self._url = URL(self.bot.url)  # parsed once, not on every call
        self._http = JsonHttpClient(
            self._where,
            fix="the url in the chatbot file",
            redirect_fix="url in the chatbot file",
            timeout_s=config.request_timeout_s,
            headers={**default, **resolved},
            secrets={*resolved.values(), *env_values},
        )
        self._model_name = self.bot.name or self._url.host or self._where
        self._response_path = jmespath.compile(self.bot.response_path)
        usage = self.bot.usage_paths or UsagePaths()
        self._usage_paths = {
            field: jmespath.compile(expr)
            for field, expr in usage.model_dump().items()
            if expr is not None
        }
        self._identity = f"http:{self._where}#{self.bot.mapping_digest()}"

    @property
    def identity(self) -> str:
        return self._identity

    async def _complete(self, request: ChatRequest) -> RawReply:
        body = _render(self.bot.request, placeholder_values(request))
        reply = await self._http.request(self.bot.method, self._url, body)
        try:
            data = json.loads(reply.body)
        except ValueError:
            raise TransientError(
                f"malformed JSON from {self._where}: "
                f"{self._http.excerpt(reply.body) or '(empty body)'}"
            ) from None
        text = self._response_path.search(data)
        if not isinstance(text, str):
            what = "nothing" if text is None else _type_name(text)
            keys = (
                f" (top-level keys: {', '.join(list(data)[:10])})"
                if isinstance(data, dict) and data
                else ""
            )
            raise PermanentError(
                f"response_path '{self.bot.response_path}' selected {what} in the response "
                f"from {self._where}{keys}; check the mapping in {self.path}"
            )
        counts = {field: _count(path.search(data)) for field, path in self._usage_paths.items()}
        return RawReply(text=text, model=self._model_name, **counts)

    async def aclose(self) -> None:
        await self._http.aclose()
