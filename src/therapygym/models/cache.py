"""The response cache: a SQLite file that maps a request's identity to its completion.

A key covers everything that determines a reply: the model's identity (backend, model,
server; never the API key), the messages, the sampling parameters, the seed (which is
also the sample index when k samples are drawn) and the JSON schema. Errors are never
cached, so a rerun retries them. The file is created owner-only: transcripts can hold
sensitive text.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import time
from pathlib import Path

from pydantic import BaseModel

from therapygym.errors import ConfigError
from therapygym.models.types import ChatRequest, Completion
from therapygym.records import canonical_json

CACHE_ENV = "THERAPYGYM_CACHE"


def default_cache_path() -> Path:
    """`$THERAPYGYM_CACHE`, else `$XDG_CACHE_HOME/therapygym/responses.sqlite`."""
    if env := os.environ.get(CACHE_ENV):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "therapygym" / "responses.sqlite"


def cache_key(model_identity: str, request: ChatRequest) -> str:
    """sha256 over the model identity and the full request."""
    payload = canonical_json({"model": model_identity, "request": request.model_dump(mode="json")})
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class CacheStats(BaseModel):
    """What `therapygym cache stats` prints."""

    path: str
    entries: int
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
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS responses ("
                " key TEXT PRIMARY KEY, model TEXT NOT NULL, created REAL NOT NULL,"
                " completion TEXT NOT NULL)"
            )
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
        data = completion.model_copy(update={"cached": False}).model_dump_json()
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO responses (key, model, created, completion)"
                " VALUES (?, ?, ?, ?)",
                (key, model_identity, time.time(), data),
            )

    def stats(self) -> CacheStats:
        with self._lock:
            (entries,) = self._db.execute("SELECT COUNT(*) FROM responses").fetchone()
            rows = self._db.execute(
                "SELECT model, COUNT(*) FROM responses GROUP BY model ORDER BY 2 DESC"
            ).fetchall()
        size = sum(
            p.stat().st_size
            for p in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm"))
            if p.exists()
        )
        return CacheStats(
            path=str(self.path), entries=entries, size_bytes=size, by_model=dict(rows)
        )

    def clear(self, model_identity: str | None = None) -> int:
        """Delete every entry, or only one model's; returns how many were deleted."""
        with self._lock:
            if model_identity is None:
                cur = self._db.execute("DELETE FROM responses")
            else:
                cur = self._db.execute("DELETE FROM responses WHERE model = ?", (model_identity,))
            deleted = cur.rowcount
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.execute("VACUUM")
        return deleted

    def close(self) -> None:
        with self._lock:
            self._db.close()
