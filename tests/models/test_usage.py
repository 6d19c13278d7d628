"""Per-role accounting: tokens, cached calls, errors and cost."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from therapygym.errors import ModelCallError
from therapygym.models import AccountedModel, ResponseCache, UsageLedger, load_model
from therapygym.models.spec import ModelConfig, Price


@pytest.fixture
def counter_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "countbot.py").write_text(
        textwrap.dedent(
            """
            def reply(messages):
                if messages[-1]["content"] == "fail":
                    raise ValueError("no")
                return {"text": "ok", "prompt_tokens": 1000, "completion_tokens": 500}
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    return "countbot"


async def test_ledger_by_role_with_prices(counter_module: str, cache: ResponseCache) -> None:
    price = Price(input_per_mtok=2.0, output_per_mtok=10.0)
    config = ModelConfig(backend="python", model=f"{counter_module}:reply", price=price)
    base = load_model(config, cache=cache)
    ledger = UsageLedger()
    therapist = AccountedModel(base, "therapist", ledger)
    judge = AccountedModel(base, "judge", ledger)
    await therapist.chat([{"role": "user", "content": "a"}])
    await therapist.chat([{"role": "user", "content": "a"}])  # cached: free
    await judge.chat([{"role": "user", "content": "b"}])
    with pytest.raises(ModelCallError):
        await judge.chat([{"role": "user", "content": "fail"}])

    t, j, total = ledger.roles["therapist"], ledger.roles["judge"], ledger.total()
    assert (t.calls, t.cached_calls, t.prompt_tokens, t.completion_tokens) == (2, 1, 2000, 1000)
    assert t.cost_usd == pytest.approx(1000 * 2e-6 + 500 * 10e-6)
    assert (j.calls, j.errors) == (1, 1)
    assert total.calls == 3 and total.errors == 1 and total.total_tokens == 4500
    assert total.cost_usd == pytest.approx(2 * (1000 * 2e-6 + 500 * 10e-6))


async def test_cost_unknown_without_price(counter_module: str) -> None:
    ledger = UsageLedger()
    model = AccountedModel(load_model(f"python:{counter_module}:reply"), "patient", ledger)
    await model.chat([{"role": "user", "content": "x"}])
    assert ledger.roles["patient"].cost_usd is None
    assert ledger.total().cost_usd is None


async def test_retries_reconcile_with_the_requests_a_server_saw(
    openai_server: Any, server_spec: Any, cache: ResponseCache
) -> None:
    server = openai_server("fine", fault_script=["429", None, "500", "drop"])
    ledger = UsageLedger()
    model = AccountedModel(
        load_model(server_spec(server, max_retries=1), cache=cache), "therapist", ledger
    )
    await model.chat([{"role": "user", "content": "a"}])  # 429, then ok
    with pytest.raises(ModelCallError):  # 500, dropped: out of attempts
        await model.chat([{"role": "user", "content": "b"}])
    await model.chat([{"role": "user", "content": "c"}])  # ok at once
    await model.chat([{"role": "user", "content": "c"}])  # cached: no request
    u = ledger.roles["therapist"]
    assert (u.calls, u.cached_calls, u.errors, u.retries) == (3, 1, 1, 2)
    sent = sum(server.fault_counts.values())
    assert sent == u.calls - u.cached_calls + u.errors + u.retries == 5
