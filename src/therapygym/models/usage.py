"""Token and cost accounting per role (therapist, patient, judge, ...).

A model is wrapped once per role with `AccountedModel`; the wrapper forwards `chat` and
adds the completion's usage to a shared `UsageLedger`. Cached replies are counted as
calls and tokens but cost nothing; failed calls are counted as errors. Retries (attempts
after the first, of calls that succeeded or failed) are counted too, so the requests a
server saw can be reconciled with the calls a run made: requests = calls - cached_calls
+ errors + retries + fallbacks. A fallback is a request re-sent because the server refused
a parameter (a reasoning model's `max_tokens` or temperature); `fallback_notes` say which,
so a run shows that its model was not called as configured.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel, Field

from therapygym.errors import ModelCallError
from therapygym.models.base import BaseChatModel
from therapygym.models.types import Completion


class RoleUsage(BaseModel):
    """Totals for one role."""

    calls: int = 0
    cached_calls: int = 0
    errors: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None
    latency_s: float = 0.0
    fallbacks: int = 0
    fallback_notes: list[str] = Field(default_factory=list)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


def _book_fallbacks(usage: RoleUsage, notes: Sequence[str], *, count: int | None = None) -> None:
    """Add `count` fallbacks (default: one per note) and the notes not yet listed."""
    usage.fallbacks += len(notes) if count is None else count
    usage.fallback_notes.extend(n for n in dict.fromkeys(notes) if n not in usage.fallback_notes)


class UsageLedger:
    """Usage by role for one run; safe to share across coroutines of one event loop."""

    def __init__(self) -> None:
        self.roles: dict[str, RoleUsage] = {}

    def record(self, role: str, completion: Completion, cost_usd: float | None) -> None:
        usage = self.roles.setdefault(role, RoleUsage())
        usage.calls += 1
        usage.prompt_tokens += completion.prompt_tokens
        usage.completion_tokens += completion.completion_tokens
        if completion.cached:
            usage.cached_calls += 1
        else:
            _book_fallbacks(usage, completion.fallbacks)
            usage.retries += completion.attempts - 1
            usage.latency_s += completion.latency_s
            if cost_usd is not None:
                usage.cost_usd = (usage.cost_usd or 0.0) + cost_usd

    def record_error(self, role: str, error: ModelCallError) -> None:
        usage = self.roles.setdefault(role, RoleUsage())
        usage.errors += 1
        usage.retries += error.attempts - 1

    def total(self) -> RoleUsage:
        """All roles summed; cost is None only when no role had a known price."""
        total = RoleUsage()
        for u in self.roles.values():
            total.calls += u.calls
            total.cached_calls += u.cached_calls
            total.errors += u.errors
            total.retries += u.retries
            total.prompt_tokens += u.prompt_tokens
            total.completion_tokens += u.completion_tokens
            total.latency_s += u.latency_s
            _book_fallbacks(total, u.fallback_notes, count=u.fallbacks)
            if u.cost_usd is not None:
                total.cost_usd = (total.cost_usd or 0.0) + u.cost_usd
        return total


class AccountedModel:
    """A `ChatModel` that books every call to one role of a ledger."""

    def __init__(self, model: BaseChatModel, role: str, ledger: UsageLedger) -> None:
        self.model = model
        self.role = role
        self.ledger = ledger
        self.spec = model.spec

    async def chat(self, messages: list[Any], **params: Any) -> Completion:
        try:
            completion = await self.model.chat(messages, **params)
        except ModelCallError as err:
            self.ledger.record_error(self.role, err)
            raise
        price = self.model.config.price
        cost: float | None = None
        if price is not None:
            cost = (
                0.0
                if completion.cached
                else price.cost(completion.prompt_tokens, completion.completion_tokens)
            )
        self.ledger.record(self.role, completion, cost)
        return completion
