"""The response cache: a SQLite file that maps a request's identity to its completion.

A key covers everything that determines a reply: the model's identity (backend, model,
server; never the API key), the messages, the sampling parameters, the seed (which is also
the sample index when k samples are drawn) and the JSON schema, with the schema dialect
the backend sends it in when that differs from the schema (`models/dialects.py`). Errors
are never cached, so a rerun retries them. Neither is a reply its caller rejected (judge
output that failed validation): served again, it would fail the re-ask and every re-run
the same way, so it moves to a `rejected` table, kept for the record but never served, and
the next identical request goes to the model. The file is created owner-only: transcripts
can hold sensitive text.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from pathlib import Path

from pydantic import BaseModel, Field

from therapygym.errors import ConfigError
from therapygym.models.types import ChatRequest, Completion
from therapygym.records import canonical_json

CACHE_ENV = "THERAPYGYM_CACHE"

# Run on every open: a file made before the `rejected` table existed gains it in place, and
# its `responses` rows (and their keys) are untouched.
_TABLES = (
    "CREATE TABLE IF NOT EXISTS responses ("
    " key TEXT PRIMARY KEY, model TEXT NOT NULL, created REAL NOT NULL,"
    " completion TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS rejected ("
    " key TEXT NOT NULL, model TEXT NOT NULL, created REAL NOT NULL,"
    " completion TEXT NOT NULL, reason TEXT NOT NULL)",
)


def cache_home() -> Path:
    """`$XDG_CACHE_HOME/therapygym` (else ~/.cache/therapygym): where caches go."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "therapygym"


def default_cache_path() -> Path:
    """`$THERAPYGYM_CACHE`, else `$XDG_CACHE_HOME/therapygym/responses.sqlite`."""
    if env := os.environ.get(CACHE_ENV):
        return Path(env).expanduser()
    return cache_home() / "responses.sqlite"


def cache_key(model_identity: str, request: ChatRequest) -> str:
    """sha256 over the model identity and the full request."""
    payload = canonical_json({"model": model_identity, "request": request.model_dump(mode="json")})
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _stored(completion: Completion) -> str:
    """A completion as an entry holds it: its text, a reasoning model's thinking (kept
    apart, so a cached reply still never shows it as the answer) and the accounting; not
    the parameter fallbacks of the call that made it (a cache hit makes no request)."""
    return completion.model_copy(update={"cached": False}).model_dump_json(exclude={"fallbacks"})


class CacheStats(BaseModel):
    """What `therapygym cache stats` prints."""

    path: str
    entries: int
    rejected: int = Field(description="Replies kept for the record that are never served.")
    size_bytes: int
    by_model: dict[str, int]


class ResponseCache:
    """A thread-safe SQLite response cache (WAL mode, owner-only file)."""

    def __init__(self, path: Path | str | None = None) -> None:
        self.path = Path(path) if path is not None else default_cache_path()
        self._lock = threading.Lock()
        where = f"response cache {self.path}"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not self.path.exists():
                # Create the file owner-only before SQLite opens it with the umask's mode.
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            tables = {
                r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            if tables and "responses" not in tables:  # never write into another app's file
                self._db.close()
                raise ConfigError(
                    f"{where}: a SQLite database of some other program, not a response cache; "
                    "pass another --cache path, or --no-cache"
                )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=10000")
            for table in _TABLES:
                self._db.execute(table)
        except (sqlite3.DatabaseError, OSError) as err:
            problem = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
            raise ConfigError(
                f"{where}: cannot be opened ({problem}); pass another --cache path, or --no-cache"
            ) from None

    def get(self, key: str) -> Completion | None:
        with self._lock:
            row = self._db.execute(
                "SELECT completion FROM responses WHERE key = ?", (key,)
            ).fetchone()
        if row is None:
            return None
        return Completion.model_validate_json(row[0]).model_copy(update={"cached": True})

    def put(self, key: str, model_identity: str, completion: Completion) -> None:
        data = _stored(completion)
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO responses (key, model, created, completion)"
                " VALUES (?, ?, ?, ?)",
                (key, model_identity, time.time(), data),
            )

    def reject(self, key: str, model_identity: str, completion: Completion, reason: str) -> None:
        """Record a reply its caller could not use, and stop serving it under `key`.

        Only a stored reply with the same text is removed: a valid one that another
        process stored under the key meanwhile stays.
        """
        data = _stored(completion)
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(
                    "INSERT INTO rejected (key, model, created, completion, reason)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (key, model_identity, time.time(), data, reason),
                )
                self._db.execute(
                    "DELETE FROM responses"
                    " WHERE key = ? AND json_extract(completion, '$.text') = ?",
                    (key, completion.text),
                )
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def stats(self) -> CacheStats:
        with self._lock:
            (entries,) = self._db.execute("SELECT COUNT(*) FROM responses").fetchone()
            (rejected,) = self._db.execute("SELECT COUNT(*) FROM rejected").fetchone()
            rows = self._db.execute(
                "SELECT model, COUNT(*) FROM responses GROUP BY model ORDER BY 2 DESC"
            ).fetchall()
        size = sum(
            p.stat().st_size
            for p in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm"))
            if p.exists()
        )
        return CacheStats(
            path=str(self.path),
            entries=entries,
            rejected=rejected,
            size_bytes=size,
            by_model=dict(rows),
        )

    def clear(self, model_identity: str | None = None) -> int:
        """Delete every entry, or only one model's, with its rejected records; returns how
        many entries (servable replies) were deleted."""
        where = "" if model_identity is None else " WHERE model = ?"
        args: tuple[str, ...] = () if model_identity is None else (model_identity,)
        with self._lock:
            self._db.execute(f"DELETE FROM rejected{where}", args)
            deleted = self._db.execute(f"DELETE FROM responses{where}", args).rowcount
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.execute("VACUUM")
        return deleted

    def close(self) -> None:
        with self._lock:
            self._db.close()
