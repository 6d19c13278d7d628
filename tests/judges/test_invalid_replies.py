"""Invalid judge replies are kept for the record but never served from the cache again
(issue 16, item 3): a unit that failed recovers on a re-run once the model answers well,
a re-ask is not answered by a cached bad reply, and valid replies are still served."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field
from scripted import judge_replier

from therapygym.config import EvalConfig, RunSection
from therapygym.judges.parsing import structured_call
from therapygym.judges.plan import JudgePlan
from therapygym.models.base import BaseChatModel, RawReply
from therapygym.models.cache import ResponseCache, cache_key
from therapygym.models.spec import ModelConfig
from therapygym.models.types import ChatRequest, Completion
from therapygym.patients.library import load_profiles
from therapygym.records import SessionConfig
from therapygym.runner import evaluate, judge_run
from therapygym.store import RunStore


class Score(BaseModel):
    rationale: str
    score: int = Field(ge=0, le=6)


ASK = [{"role": "user", "content": "rate"}]
GOOD = '{"rationale": "fine", "score": 4}'
PROSE = "I refuse to answer in JSON."
OUT_OF_RANGE = '{"rationale": "x", "score": 9}'


class ScriptedJudge(BaseChatModel):
    """A backend behind the real cache whose replies come from `script` (one per call,
    the last repeated), so a test can make the model answer badly, then well."""

    def __init__(self, script: list[str], cache: ResponseCache) -> None:
        super().__init__(ModelConfig(backend="python", model="scripted-judge"), cache)
        self.script = script
        self.calls = 0

    @property
    def identity(self) -> str:
        return "python:scripted-judge"

    async def _complete(self, request: ChatRequest) -> RawReply:
        self.calls += 1
        return RawReply(text=self.script[min(self.calls, len(self.script)) - 1], model="s")


async def test_a_failed_call_succeeds_on_rerun_once_the_model_answers_well(
    cache: ResponseCache,
) -> None:
    model = ScriptedJudge([PROSE], cache)
    first = await structured_call(model, ASK, Score, max_attempts=2)
    assert not first.ok and model.calls == 2

    model.script, model.calls = [GOOD], 0
    again = await structured_call(model, ASK, Score, max_attempts=2)
    assert again.ok and again.attempts == 1 and again.raw_outputs == [GOOD]
    assert model.calls == 1  # asked afresh: the bad reply was not replayed
    assert cache.stats().rejected == 2  # both bad replies are kept for the record

    third = await structured_call(model, ASK, Score, max_attempts=2)
    assert third.ok and model.calls == 1  # the valid reply is served from the cache


async def test_a_reask_is_not_served_a_cached_bad_reply(cache: ResponseCache) -> None:
    """The first attempt's reply is bad again, and the re-ask after it was answered badly
    before: the re-ask goes to the model, which now answers well."""
    model = ScriptedJudge([PROSE, OUT_OF_RANGE, GOOD], cache)
    first = await structured_call(model, ASK, Score, max_attempts=3)
    assert first.ok and first.raw_outputs == [PROSE, OUT_OF_RANGE, GOOD]

    model.script, model.calls = [PROSE, '{"rationale": "now", "score": 5}'], 0
    again = await structured_call(model, ASK, Score, max_attempts=3)
    assert again.ok and again.value is not None and again.value.score == 5
    assert again.raw_outputs == [PROSE, '{"rationale": "now", "score": 5}']
    assert model.calls == 2  # neither bad reply was served from the cache


async def test_a_bad_reply_in_an_old_cache_file_is_not_served(tmp_path: Path) -> None:
    """A cache written before rejected replies were kept apart (one `responses` table,
    a bad judge reply in it) is migrated in place: its valid entries still hit under
    their old keys and its bad one is moved aside instead of served."""
    path = tmp_path / "old.sqlite"
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE responses (key TEXT PRIMARY KEY, model TEXT NOT NULL,"
        " created REAL NOT NULL, completion TEXT NOT NULL)"
    )
    request = ChatRequest(
        messages=tuple(ASK), max_tokens=1024, json_schema=Score.model_json_schema()
    )
    bad_key = cache_key("python:scripted-judge", request)
    good_key = cache_key("python:scripted-judge", request.model_copy(update={"seed": 1}))
    for key, text in ((bad_key, PROSE), (good_key, GOOD)):
        old.execute(
            "INSERT INTO responses VALUES (?, ?, 0, ?)",
            (key, "python:scripted-judge", Completion(text=text, model="s").model_dump_json()),
        )
    old.commit()
    old.close()

    cache = ResponseCache(path)
    model = ScriptedJudge([GOOD], cache)
    served = await structured_call(model, ASK, Score, seed=1)
    assert served.ok and model.calls == 0  # the old valid entry hits under its old key
    out = await structured_call(model, ASK, Score)
    assert out.ok and out.attempts == 1 and model.calls == 1
    stats = cache.stats()
    assert (stats.entries, stats.rejected) == (2, 1)
    cache.close()


async def test_a_failed_unit_recovers_on_rerun(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    """End to end through the runner, the local server and a cache file: every judge
    reply is bad, so every unit fails; the server then answers well and a re-run with
    the same cache judges every unit from fresh replies. A later plan asking the same
    questions is answered from the cache."""
    mode = {"good": False}
    good = judge_replier(score=3)

    def replier(body: dict[str, Any]) -> Any:
        if body.get("response_format") and not mode["good"]:
            return PROSE
        return good(body)

    server = openai_server(replier)
    spec = server_spec(server)
    cache_path = tmp_path / "cache.sqlite"
    judges = JudgePlan(judges=(spec,), rubrics=("ctrs",), max_attempts=2)
    profiles = [p for p in load_profiles() if p.risk_cues][:2]
    config = EvalConfig(
        run_id="bad",
        run=RunSection(
            therapists=("rule-based",),
            patient_model=spec,
            patients=",".join(p.id for p in profiles),
            session=SessionConfig(max_turns=4),
        ),
        judge=judges,
        store=tmp_path / "store.sqlite",
        cache=cache_path,
    )
    first = await evaluate(config)
    assert (first.judging.units, first.judging.failed) == (2, 2)

    def judge_requests() -> int:
        return sum(1 for b in server.requests if b.get("response_format"))

    mode["good"] = True
    before = judge_requests()
    store = RunStore(tmp_path / "store.sqlite")
    cache = ResponseCache(cache_path)
    second = await judge_run(store, "bad", judges, cache=cache)
    assert (second.judged, second.failed) == (2, 0)
    assert not any(r.error for r in store.scores("bad"))
    assert judge_requests() - before == 2  # one fresh, valid reply per unit
    assert second.usage.roles["judge"].cached_calls == 0

    # max_attempts is part of the prompt fingerprint, not of a request: the same calls
    before = judge_requests()
    same_calls = judges.model_copy(update={"max_attempts": 3})
    third = await judge_run(store, "bad", same_calls, cache=cache)
    assert (third.judged, third.failed) == (2, 0)
    assert judge_requests() == before and third.usage.roles["judge"].cached_calls == 2
    cache.close()
