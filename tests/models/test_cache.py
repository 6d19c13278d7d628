"""Cache keys cover every reply-determining input; the file is private; stats and clear work."""

from __future__ import annotations

import sqlite3
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


def test_a_rejected_reply_is_kept_for_the_record_and_no_longer_served(
    cache: ResponseCache,
) -> None:
    bad = Completion(text="not json", model="m")
    cache.put("k", "m", bad)
    cache.reject("k", "m", bad, "it is not valid JSON")
    assert cache.get("k") is None
    stats = cache.stats()
    assert (stats.entries, stats.rejected) == (0, 1)
    (reason,) = cache._db.execute("SELECT reason FROM rejected WHERE key = 'k'").fetchone()
    assert reason == "it is not valid JSON"


def test_rejecting_a_reply_keeps_another_reply_stored_under_its_key(
    cache: ResponseCache,
) -> None:
    """A valid answer stored meanwhile (by another process) is not evicted by a late
    rejection of the bad one it replaced."""
    cache.put("k", "m", Completion(text="valid", model="m"))
    cache.reject("k", "m", Completion(text="not json", model="m"), "it is not valid JSON")
    hit = cache.get("k")
    assert hit is not None and hit.text == "valid"


def test_clear_removes_rejected_records_too(cache: ResponseCache) -> None:
    cache.reject("a", "model-a", Completion(text="x", model="m"), "bad")
    cache.reject("b", "model-b", Completion(text="y", model="m"), "bad")
    cache.clear("model-a")
    assert cache.stats().rejected == 1
    cache.clear()
    assert cache.stats().rejected == 0


def test_a_cache_file_made_before_rejected_records_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE responses (key TEXT PRIMARY KEY, model TEXT NOT NULL,"
        " created REAL NOT NULL, completion TEXT NOT NULL)"
    )
    key = cache_key("m", BASE)
    old.execute(
        "INSERT INTO responses VALUES (?, 'm', 0, ?)",
        (key, Completion(text="kept", model="m").model_dump_json()),
    )
    old.commit()
    old.close()
    cache = ResponseCache(path)
    hit = cache.get(key)
    assert hit is not None and hit.text == "kept" and hit.cached
    cache.reject("other", "m", Completion(text="bad", model="m"), "bad")
    assert (cache.stats().entries, cache.stats().rejected) == (1, 1)
    cache.close()
