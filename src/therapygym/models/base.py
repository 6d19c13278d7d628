"""What every backend shares: cache, concurrency limit, timeout and retries.

Backends implement one method, `_complete`, that makes a single attempt and raises
`TransientError` for failures worth retrying (429, 5xx, timeouts, dropped connections,
malformed bodies) or `PermanentError` for ones that are not (bad request, auth). The
policy around it lives here once, so all backends behave the same under faults.
"""

from __future__ import annotations

import asyncio
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from therapygym.errors import ModelCallError, ModelUnreachableError
from therapygym.models.cache import ResponseCache, cache_key
from therapygym.models.spec import ModelConfig
from therapygym.models.types import ChatRequest, Completion


class RawReply(BaseModel):
    """One attempt's result, before timing and caching are added.

    `reasoning` is what a reasoning model thought before answering, when its server sends
    it apart from the answer (`reasoning_content`); `fallbacks` say which request
    parameters the backend had to change for the server to take the request.
    """

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str
    finish_reason: str | None = None
    reasoning: str | None = None
    fallbacks: tuple[str, ...] = ()


# A reasoning model's thinking, written into the answer text: `<think>...</think>` at the
# start, or (DeepSeek-R1's chat template opens the tag in the prompt) only a closing tag.
_THINK_OPEN = re.compile(r"\A\s*<think>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think>", re.IGNORECASE)


def split_reasoning(text: str) -> tuple[str, str | None]:
    """(answer, reasoning) of a reply whose text may start with a `<think>` block.

    The reasoning is never the answer: a judge would parse it as JSON, a session would show
    it as the therapist's reply. A block never closed (cut off by max_tokens) is all
    reasoning and leaves no answer.
    """
    opened = _THINK_OPEN.match(text)
    closed = _THINK_CLOSE.search(text, opened.end() if opened else 0)
    if opened is None and closed is None:
        return text, None
    start = opened.end() if opened else 0
    if closed is None:
        return "", text[start:].strip()
    return text[closed.end() :].lstrip(), text[start : closed.start()].strip()


class TransientError(Exception):
    """A failure that may go away on retry. `retry_after_s` honours a server's hint."""

    def __init__(
        self, cause: str, *, retry_after_s: float | None = None, unreachable: bool = False
    ):
        super().__init__(cause)
        self.cause = cause
        self.retry_after_s = retry_after_s
        self.unreachable = unreachable


class PermanentError(Exception):
    """A failure that retrying will not fix (bad request, authentication, unknown model)."""

    def __init__(self, cause: str):
        super().__init__(cause)
        self.cause = cause


class _WaitRetryAfter:
    """Exponential backoff with jitter, but never shorter than the server's Retry-After."""

    def __init__(self, initial: float, maximum: float) -> None:
        self._backoff = wait_exponential_jitter(multiplier=initial, max=maximum, jitter=initial)
        self._max = maximum

    def __call__(self, state: RetryCallState) -> float:
        wait = self._backoff(state)
        exc = state.outcome.exception() if state.outcome else None
        hint = getattr(exc, "retry_after_s", None)
        return min(max(wait, hint or 0.0), self._max) if hint else wait


class BaseChatModel(ABC):
    """A `ChatModel` built from a config, a single-attempt `_complete`, and the shared policy."""

    def __init__(self, config: ModelConfig, cache: ResponseCache | None = None) -> None:
        self.config = config
        self.spec = config.label
        self.cache = cache
        self._semaphore = asyncio.Semaphore(config.max_concurrency)

    def fit(self, in_flight: int) -> None:
        """Allow the requests in flight a batch of `in_flight` sessions or judgements needs
        (`ModelConfig.limit_for`). The runner calls it on the models it builds, before
        their first request."""
        self._semaphore = asyncio.Semaphore(self.config.limit_for(in_flight))

    @property
    @abstractmethod
    def identity(self) -> str:
        """What makes two instances answer alike: the cache key's model part (no secrets)."""

    @abstractmethod
    async def _complete(self, request: ChatRequest) -> RawReply:
        """Make exactly one attempt."""

    def cache_identity(self, request: ChatRequest) -> str:
        """The model part of `request`'s cache key: `identity`, unless this backend sends
        the request differently from what the identity alone says (a schema dialect)."""
        return self.identity

    async def chat(
        self,
        messages: list[Any],
        *,
        temperature: float = 0.0,
        max_tokens: int = 256,
        seed: int = 0,
        json_schema: dict[str, Any] | None = None,
        validate: Callable[[str], str | None] | None = None,
    ) -> Completion:
        """Answer `messages`; served from the cache when this exact request was seen.

        `validate` says why a reply's text is unusable to the caller (None if usable). An
        unusable reply is still returned, for the caller to record and re-ask, but is
        never served from the cache: a fresh one goes to the cache's rejected record
        instead of its entries, and a cached one (stored before it could be checked) is
        moved there and the request made afresh. It is not part of the cache key, so
        valid replies keep their keys.

        Raises `ModelCallError` when the call fails for good (after retries for
        transient faults); callers that run many calls record it and go on.
        """
        request = ChatRequest(
            messages=tuple({"role": m["role"], "content": m["content"]} for m in messages),
            temperature=temperature,
            max_tokens=max_tokens,
            seed=seed,
            json_schema=json_schema,
        )
        if self.cache is None:
            return await self._call_with_retries(request)
        key = cache_key(self.cache_identity(request), request)
        if (hit := self.cache.get(key)) is not None:
            if (problem := validate(hit.text) if validate else None) is None:
                return hit
            self.cache.reject(key, self.identity, hit, problem)
        completion = await self._call_with_retries(request)
        if (problem := validate(completion.text) if validate else None) is None:
            self.cache.put(key, self.identity, completion)
        else:
            self.cache.reject(key, self.identity, completion, problem)
        return completion

    async def _attempt(self, request: ChatRequest) -> RawReply:
        async with self._semaphore:
            try:
                async with asyncio.timeout(self.config.request_timeout_s):
                    return await self._complete(request)
            except TimeoutError:
                raise TransientError(
                    f"timed out after {self.config.request_timeout_s:g} s"
                ) from None

    async def _call_with_retries(self, request: ChatRequest) -> Completion:
        # The first attempt runs outside tenacity: most calls succeed at once, and a
        # tenacity loop per call cost about 25 µs of CPU and a dozen objects in reference
        # cycles (locks, futures) for the garbage collector, which showed at 64+
        # concurrent sessions (docs/benchmarks.md). Only a failure starts the loop.
        started = time.perf_counter()
        try:
            reply = await self._attempt(request)
        except TransientError as err:
            if self.config.max_retries == 0:
                raise self._failed(err, attempts=1) from None
            reply, attempts, latency = await self._retry(request, err)
        except PermanentError as err:
            raise self._failed(err, attempts=1) from None
        else:
            attempts, latency = 1, time.perf_counter() - started
        text, thought = split_reasoning(reply.text)
        reasoning = "\n\n".join(r for r in (reply.reasoning, thought) if r) or None
        return Completion(
            text=text,
            prompt_tokens=reply.prompt_tokens,
            completion_tokens=reply.completion_tokens,
            latency_s=latency,
            model=reply.model,
            finish_reason=reply.finish_reason,
            attempts=attempts,
            reasoning=reasoning,
            fallbacks=reply.fallbacks,
        )

    async def _retry(
        self, request: ChatRequest, first: TransientError
    ) -> tuple[RawReply, int, float]:
        """Attempts 2.. after a transient failure of the first: (reply, attempts, latency)."""
        cfg = self.config
        attempts = 1
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(cfg.max_retries + 1),
                wait=_WaitRetryAfter(cfg.backoff_initial_s, cfg.backoff_max_s),
                retry=retry_if_exception_type(TransientError),
                reraise=True,
            ):
                with attempt:
                    attempts = attempt.retry_state.attempt_number
                    if attempts == 1:
                        raise first  # already made: tenacity waits and counts as usual
                    attempt_started = time.perf_counter()
                    reply = await self._attempt(request)
                    latency = time.perf_counter() - attempt_started
        except (TransientError, PermanentError) as err:
            raise self._failed(err, attempts=attempts) from None
        return reply, attempts, latency

    def _failed(self, err: TransientError | PermanentError, *, attempts: int) -> ModelCallError:
        """The error a caller sees once no attempt is left."""
        if isinstance(err, PermanentError):
            return ModelCallError(self.spec, err.cause, attempts=attempts, transient=False)
        error_type = ModelUnreachableError if err.unreachable else ModelCallError
        return error_type(self.spec, err.cause, attempts=attempts, transient=True)

    async def aclose(self) -> None:
        """Release connections or model handles; the default has none."""

    async def __aenter__(self) -> BaseChatModel:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
