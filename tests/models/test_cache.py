"""Cache keys cover every reply-determining input; the file is private; stats and clear work."""

from __future__ import annotations

import stat
from pathlib import Path

from therapygym.models.cache import ResponseCache, cache_key
from therapygym.models.types import ChatRequest, Completion

BASE = ChatRequest(
    messages=({"role": "user", "content": "hi"},), temperature=0.0, max_tokens=8, seed=0
)


def test_key_is_stable_and_covers_every_field() -> None:
    key = cache_key("m", BASE)
    assert key == cache_key("m", ChatRequest(**BASE.model_dump()))
    variants = [
        cache_key("other-model", BASE),
        cache_key("m", BASE.model_copy(update={"messages": ({"role": "user", "content": "hi!"},)})),
        cache_key("m", BASE.model_copy(update={"temperature": 0.7})),
        cache_key("m", BASE.model_copy(update={"max_tokens": 9})),
        cache_key("m", BASE.model_copy(update={"seed": 1})),
        cache_key("m", BASE.model_copy(update={"json_schema": {"type": "object"}})),
    ]
    assert len({key, *variants}) == len(variants) + 1


def test_roundtrip_marks_cached(cache: ResponseCache) -> None:
    done = Completion(text="hello", prompt_tokens=3, completion_tokens=1, model="m", latency_s=0.2)
    assert cache.get("k") is None
    cache.put("k", "m", done)
    hit = cache.get("k")
    assert hit is not None and hit.cached and hit.text == "hello" and hit.prompt_tokens == 3


def test_file_is_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "c.sqlite"
    ResponseCache(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_stats_and_clear_by_model(cache: ResponseCache) -> None:
    done = Completion(text="x", model="m")
    cache.put("a", "model-a", done)
    cache.put("b", "model-a", done)
    cache.put("c", "model-b", done)
    stats = cache.stats()
    assert stats.entries == 3 and stats.by_model == {"model-a": 2, "model-b": 1}
    assert cache.clear("model-b") == 1
    assert cache.stats().entries == 2
    assert cache.clear() == 2
    assert cache.stats().entries == 0


def test_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "c.sqlite"
    first = ResponseCache(path)
    first.put("k", "m", Completion(text="kept", model="m"))
    first.close()
    second = ResponseCache(path)
    hit = second.get("k")
    assert hit is not None and hit.text == "kept"
