"""The data that crosses the model layer: messages in, a `Completion` out."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Protocol, TypedDict, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

Role = Literal["system", "user", "assistant"]


class Message(TypedDict):
    """One chat message, in the OpenAI wire shape every backend accepts."""

    role: Role
    content: str


class ChatRequest(BaseModel):
    """Everything that determines a reply; its canonical JSON is the cache key's payload."""

    model_config = ConfigDict(frozen=True)

    messages: tuple[dict[str, str], ...]
    temperature: float = 0.0
    max_tokens: int = 256
    seed: int = 0
    json_schema: dict[str, Any] | None = None


class Completion(BaseModel):
    """One reply with the accounting every caller needs."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    model: str = Field(description="The model id the backend reported (or the spec's model).")
    cached: bool = False
    finish_reason: str | None = None
    attempts: int = 1
    reasoning: str | None = Field(
        None,
        description="A reasoning model's thinking, kept apart from `text` (never the answer).",
    )
    fallbacks: tuple[str, ...] = Field(
        (),
        description="Request parameters the backend changed after the server refused them "
        "(e.g. max_tokens -> max_completion_tokens); each re-sent the request once. Not "
        "cached: a cached reply made no request.",
    )

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@runtime_checkable
class ChatModel(Protocol):
    """The one async interface every LLM call in therapygym goes through."""

    spec: str

    async def chat(
        self,
        messages: list[Message] | list[dict[str, str]],
        *,
        temperature: float = 0.0,
        max_tokens: int = 256,
        seed: int = 0,
        json_schema: dict[str, Any] | None = None,
        validate: Callable[[str], str | None] | None = None,
    ) -> Completion:
        """`validate` returns why a reply is unusable (None if usable); a cached
        model never serves an unusable reply from its cache again."""
        ...
