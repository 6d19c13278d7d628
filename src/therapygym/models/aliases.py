"""Provider aliases: model names as Inspect AI and LiteLLM users write them.

`openai/gpt-4o`, `anthropic/claude-sonnet-4-5`, `vllm/Qwen/Qwen2.5-7B-Instruct`,
`ollama/llama3.1:8b` and the like are expanded into our own spec form before it is parsed,
so a model name copied from another tool's command line works here unchanged:

    vllm/Qwen/Qwen2.5-7B-Instruct?concurrency=32
    -> openai:Qwen/Qwen2.5-7B-Instruct?base_url=$VLLM_BASE_URL&concurrency=32

Options after `?` are kept, and an option given there wins over the alias's (a base_url
given in the spec needs no variable). Only the prefix before the first `/` names the
provider; the rest, slashes and colons included, is the model. The server address and key
come from the environment variables the other tools read, so one shell serves both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

from therapygym.errors import ModelSpecError


@dataclass(frozen=True)
class Alias:
    """One provider prefix and what it becomes."""

    prefix: str
    backend: str
    # The server when its variable is unset; None: the variable must be set (or base_url=
    # given), or, with no variable either, the backend's own default server.
    base_url: str | None = None
    base_url_env: str | None = None
    key_env: str | None = None  # passed as api_key_env=
    key_optional: bool = False  # pass key_env only when it is set (local servers)

    def becomes(self) -> str:
        """What the alias turns into, for the table in the docs."""
        options = []
        if self.base_url or self.base_url_env:
            options.append(f"base_url={self.base_url or '$' + str(self.base_url_env)}")
        if self.key_env and not self.key_optional:
            options.append(f"api_key_env={self.key_env}")
        return f"{self.backend}:<model>" + (f"?{'&'.join(options)}" if options else "")

    def environment(self) -> str:
        """The variables it reads and what each does, for the table in the docs."""
        notes = []
        if self.base_url_env:
            role = "overrides the address" if self.base_url else "the address, required"
            notes.append(f"`{self.base_url_env}` ({role})")
        key = self.key_env or (None if self.base_url_env else _BACKEND_KEYS[self.backend])
        if key:
            notes.append(f"`{key}` (key{', if the server needs one' if self.key_optional else ''})")
        return ", ".join(notes) or "none"


# The key a backend reads when an alias names no variable of its own (for the table).
_BACKEND_KEYS = {"openai": "OPENAI_API_KEY", "anthropic": "ANTHROPIC_API_KEY"}

ALIASES: dict[str, Alias] = {
    alias.prefix: alias
    for alias in (
        Alias("openai", "openai"),
        Alias("anthropic", "anthropic"),
        Alias("vllm", "openai", None, "VLLM_BASE_URL", "VLLM_API_KEY", key_optional=True),
        Alias("ollama", "openai", "http://localhost:11434/v1", "OLLAMA_BASE_URL"),
        Alias(
            "openrouter",
            "openai",
            "https://openrouter.ai/api/v1",
            "OPENROUTER_BASE_URL",
            "OPENROUTER_API_KEY",
        ),
        Alias(
            "together",
            "openai",
            "https://api.together.xyz/v1",
            "TOGETHER_BASE_URL",
            "TOGETHER_API_KEY",
        ),
        Alias("groq", "openai", "https://api.groq.com/openai/v1", "GROQ_BASE_URL", "GROQ_API_KEY"),
    )
}


def is_alias(spec: str) -> bool:
    """Whether `spec` has the `provider/model` shape: a `/` before any `:` (so
    `gguf:/path` and `openai:org/model` are backend specs, `ollama/llama3.1:8b` is not)."""
    head = spec.partition("?")[0]
    slash, colon = head.find("/"), head.find(":")
    return slash > 0 and (colon < 0 or slash < colon)


def expand_alias(spec: str) -> str:
    """`provider/model[?options]` in our spec form; any other spec unchanged.

    Raises `ModelSpecError` for an unknown provider (listing the aliases), an empty model,
    or a server variable that must be set and is not (naming it).
    """
    if not is_alias(spec):
        return spec
    head, _, query = spec.partition("?")
    prefix, _, model = head.partition("/")
    alias = ALIASES.get(prefix)
    if alias is None:
        known = ", ".join(f"{name}/" for name in ALIASES)
        raise ModelSpecError(
            f"unknown provider '{prefix}/' in model spec '{spec}': the aliases are {known} "
            "(or write a backend spec such as openai:<model>?base_url=...)"
        )
    if not model:
        raise ModelSpecError(f"model spec '{spec}': no model after '{prefix}/'")
    given = dict(parse_qsl(query, keep_blank_values=True))
    options: dict[str, str] = {}
    if "base_url" not in given:
        from_env = os.environ.get(alias.base_url_env) if alias.base_url_env else None
        if from_env or alias.base_url:
            options["base_url"] = from_env or alias.base_url or ""
        elif alias.base_url_env:
            raise ModelSpecError(
                f"model spec '{spec}': {alias.base_url_env} is not set; export the server's "
                f"address (e.g. {alias.base_url_env}=http://127.0.0.1:8000/v1) or give "
                f"?base_url=..."
            )
    # An optional key (a local server's) is passed only when set: else none is sent.
    wants_key = alias.key_env and not (alias.key_optional and not os.environ.get(alias.key_env))
    if wants_key and "api_key_env" not in given:
        options["api_key_env"] = str(alias.key_env)
    options.update(given)
    return f"{alias.backend}:{model}" + (f"?{urlencode(options, safe=':/')}" if options else "")


def alias_table() -> str:
    """The aliases as a markdown table (alias, becomes, environment variables)."""
    rows = ["| Alias | Becomes | Environment |", "| --- | --- | --- |"]
    for alias in ALIASES.values():
        rows.append(f"| `{alias.prefix}/<model>` | `{alias.becomes()}` | {alias.environment()} |")
    return "\n".join(rows)
