"""Shared fixtures: an isolated cache and environment, and the local OpenAI-compatible server."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from therapygym.models import ResponseCache
from therapygym.testing.openai_server import FakeOpenAIServer

# The in-process CLI tests (clirun.py) compare whole lines of the console's output, and the
# console takes its width from COLUMNS when it is built, at import. pytest-xdist's workers
# (`make test` runs the fast tests on two) start with COLUMNS=80, which wraps long paths;
# without it piped output is 120 wide (report/terminal.py) in every way pytest is started.
os.environ.pop("COLUMNS", None)

SHARED_DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads a developer's real cache, models file or API key."""
    monkeypatch.setenv("THERAPYGYM_CACHE", str(tmp_path / "cache.sqlite"))
    for var in ("THERAPYGYM_MODELS", "OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[ResponseCache]:
    c = ResponseCache(tmp_path / "responses.sqlite")
    yield c
    c.close()


@pytest.fixture
def openai_server() -> Iterator[Any]:
    """A factory: `openai_server(replies, latency_s=..., fault_script=...)` starts a server
    on 127.0.0.1 that is stopped at the end of the test."""
    servers: list[FakeOpenAIServer] = []

    def start(*args: Any, **kwargs: Any) -> FakeOpenAIServer:
        server = FakeOpenAIServer(*args, **kwargs).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def spec_for(server: FakeOpenAIServer, **options: Any) -> str:
    """An `openai:` spec string pointing at a local server, with fast retry settings."""
    opts = {"base_url": server.base_url, "backoff_initial_s": 0.01, "backoff_max_s": 0.05}
    opts.update(options)
    return "openai:fake-model?" + "&".join(f"{k}={v}" for k, v in opts.items())


@pytest.fixture
def ctrl_c_reaches_children() -> None:
    """For tests that press Ctrl-C in a child: a shell without job control starts a
    background command (`make test &` in a script) with SIGINT ignored, children inherit
    that, and the child would finish its work and exit 0; say so instead."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        pytest.fail(
            "SIGINT is ignored in this test process (a shell started it in the background "
            "without job control), so its children ignore Ctrl-C too; run the tests in the "
            "foreground",
            pytrace=False,
        )


@pytest.fixture
def server_spec() -> Any:
    """`server_spec(server, **options)` -> an `openai:` spec for that local server."""
    return spec_for


class RecordingModel:
    """A `ChatModel` for unit tests of the layers above the model layer: replies from a
    script (cycled) or a function, and records every request it was sent."""

    def __init__(self, replies: Any = "ok", spec: str = "recording") -> None:
        self.replies = replies
        self.spec = spec
        self.requests: list[dict[str, Any]] = []

    async def chat(self, messages: list[Any], **params: Any) -> Any:
        from therapygym.models import Completion

        self.requests.append({"messages": list(messages), **params})
        if callable(self.replies):
            text = self.replies(messages)
        elif isinstance(self.replies, str):
            text = self.replies
        else:
            text = self.replies[(len(self.requests) - 1) % len(self.replies)]
        return Completion(text=text, model=self.spec, prompt_tokens=3, completion_tokens=2)


@pytest.fixture
def recording_model() -> Any:
    """`recording_model(replies)` -> a RecordingModel."""
    return RecordingModel
