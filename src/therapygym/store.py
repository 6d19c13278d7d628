"""The run store: one SQLite file (WAL mode) holding runs, sessions, turns and scores.

Each finished session is written in one transaction (its row and all its turns), so a
`kill -9` loses at most the sessions in flight and never leaves half a session behind.
The file is created owner-only: transcripts hold sensitive text.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from itertools import groupby
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from therapygym.artefacts import write_problem
from therapygym.errors import TherapygymError
from therapygym.records import (
    FINISHED,
    ScoreRecord,
    SessionConfig,
    SessionStatus,
    Transcript,
    Turn,
    canonical_json,
)
from therapygym.shards import other_shard

STORE_ENV = "THERAPYGYM_STORE"
SCHEMA_VERSION = 4  # what `_SCHEMA` and `_STUDY_SCHEMA` create; older stores are migrated on open
PAGE_SIZE = 256  # sessions that `RunStore.sessions` reads (and holds) at a time

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
  run_id      TEXT PRIMARY KEY,
  created_at  TEXT NOT NULL,
  config      TEXT NOT NULL,
  provenance  TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS sessions (
  session_id      TEXT PRIMARY KEY,
  run_id          TEXT NOT NULL REFERENCES runs(run_id) ON DELETE CASCADE,
  profile_id      TEXT NOT NULL,
  profile_version INTEGER,
  therapist       TEXT NOT NULL,
  patient         TEXT NOT NULL,
  sample          INTEGER NOT NULL,
  seed            INTEGER NOT NULL,
  status          TEXT NOT NULL,
  error           TEXT,
  n_turns         INTEGER NOT NULL,
  started_at      TEXT,
  wall_s          REAL NOT NULL,
  config          TEXT NOT NULL,
  meta            TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_by_run ON sessions(run_id, status);
CREATE INDEX IF NOT EXISTS sessions_in_order
  ON sessions(run_id, profile_id, therapist, sample, session_id);
CREATE TABLE IF NOT EXISTS turns (
  turn_id           TEXT PRIMARY KEY,
  session_id        TEXT NOT NULL REFERENCES sessions(session_id) ON DELETE CASCADE,
  idx               INTEGER NOT NULL,
  speaker           TEXT NOT NULL,
  text              TEXT NOT NULL,
  latency_s         REAL NOT NULL,
  prompt_tokens     INTEGER NOT NULL,
  completion_tokens INTEGER NOT NULL,
  cached            INTEGER NOT NULL,
  model             TEXT,
  cues              TEXT NOT NULL,
  meta              TEXT NOT NULL DEFAULT '{}',
  UNIQUE (session_id, idx)
);
CREATE TABLE IF NOT EXISTS scores (
  score_id           TEXT PRIMARY KEY,
  session_id         TEXT NOT NULL REFERENCES sessions(session_id) ON DELETE CASCADE,
  judge              TEXT NOT NULL,
  rubric_id          TEXT NOT NULL,
  rubric_version     TEXT NOT NULL,
  prompt_fingerprint TEXT NOT NULL,
  sample             INTEGER NOT NULL,
  target             TEXT NOT NULL,
  result             TEXT,
  raw_outputs        TEXT NOT NULL,
  error              TEXT,
  prompt_tokens      INTEGER NOT NULL,
  completion_tokens  INTEGER NOT NULL,
  created_at         TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS scores_by_unit
  ON scores(session_id, judge, rubric_id, rubric_version, prompt_fingerprint, sample);
"""

# The rating studio's studies (schema 4; therapygym.studio reads and writes them). Sessions
# are referenced by id without a foreign key: `save_session` replaces a session by deleting
# and inserting it, which a key would refuse (or, cascading, would wipe clinicians' ratings).
# `na` marks a safety label rated not applicable (its value is then NULL); a rating's key is
# (study, rater, session, item), so a double submit or a second tab updates the one row.
_STUDY_SCHEMA = """
CREATE TABLE IF NOT EXISTS studies (
  study_id    TEXT PRIMARY KEY,
  created_at  TEXT NOT NULL,
  plan        TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS study_raters (
  study_id    TEXT NOT NULL REFERENCES studies(study_id) ON DELETE CASCADE,
  rater       TEXT NOT NULL,
  token_hash  TEXT NOT NULL,
  is_admin    INTEGER NOT NULL DEFAULT 0,
  revoked_at  TEXT,
  PRIMARY KEY (study_id, rater)
);
CREATE TABLE IF NOT EXISTS study_assignments (
  study_id     TEXT NOT NULL,
  rater        TEXT NOT NULL,
  session_id   TEXT NOT NULL,
  phase        TEXT NOT NULL CHECK (phase IN ('practice', 'study')),
  position     INTEGER NOT NULL,
  state        TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'submitted', 'skipped')),
  flagged      INTEGER NOT NULL DEFAULT 0,
  submitted_at TEXT,
  PRIMARY KEY (study_id, rater, session_id),
  FOREIGN KEY (study_id, rater) REFERENCES study_raters(study_id, rater) ON DELETE CASCADE
);
CREATE TABLE IF NOT EXISTS study_ratings (
  study_id    TEXT NOT NULL REFERENCES studies(study_id) ON DELETE CASCADE,
  rater       TEXT NOT NULL,
  session_id  TEXT NOT NULL,
  item        TEXT NOT NULL,
  value       INTEGER,
  na          INTEGER NOT NULL DEFAULT 0,
  evidence    TEXT NOT NULL DEFAULT '[]',
  note        TEXT,
  rubric_ref  TEXT NOT NULL,
  updated_at  TEXT NOT NULL,
  PRIMARY KEY (study_id, rater, session_id, item)
);
CREATE INDEX IF NOT EXISTS study_ratings_by_session ON study_ratings(study_id, session_id);
"""


def _statements(script: str) -> tuple[str, ...]:
    return tuple(s.strip() for s in script.split(";") if s.strip())


# What takes a store written by an older release to the next version: each step runs, with
# the version bump, in one transaction, so a store is never left half migrated.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    # 2: turns.meta, what a participant recorded about its turn (TheraAgent's rounds)
    2: ("ALTER TABLE turns ADD COLUMN meta TEXT NOT NULL DEFAULT '{}'",),
    # 3: runs.provenance, how a run was made (package version, revision, Python, rubric
    # fingerprints, the resolved config); runs made before it keep '{}'
    3: ("ALTER TABLE runs ADD COLUMN provenance TEXT NOT NULL DEFAULT '{}'",),
    # 4: the rating studio's tables (studies, their raters, assignments and ratings)
    4: _statements(_STUDY_SCHEMA),
}


class StoreError(TherapygymError):
    """A store that cannot be opened, or a run/session that is not in it."""


class SessionHead(BaseModel):
    """A stored session without its turns, config and meta: what a summary, a judging
    plan or a session list needs, at a small fraction of a transcript's memory."""

    model_config = ConfigDict(frozen=True)

    session_id: str
    run_id: str
    profile_id: str
    profile_version: int | None
    therapist: str
    patient: str
    sample: int
    seed: int
    status: SessionStatus
    error: str | None
    n_turns: int


class RunInfo(BaseModel):
    run_id: str
    created_at: str
    config: dict[str, Any]
    provenance: dict[str, Any] = {}
    sessions: int = 0
    finished: int = 0
    failed: int = 0


def default_store_path() -> Path:
    """`$THERAPYGYM_STORE`, else `results/therapygym.sqlite` under the working directory."""
    return Path(os.environ.get(STORE_ENV) or "results/therapygym.sqlite")


def check_store_path(path: Path | None, *, option: str = "--store") -> None:
    """Refuse, before any work, a store path (None: the default) where no store can be
    created or written: a folder, a path under a file, or a folder in which nothing can be
    created. The error names `option` (or the default), the path and the problem."""
    target = path if path is not None else default_store_path()
    if problem := write_problem(target):
        name = option if path is not None else f"the default {option}"
        raise StoreError(f"{name} {target}: {problem}")


_STORE_TABLES = frozenset({"runs", "sessions", "turns", "scores"})
# every column of a row, by name (a migrated store has them in another order): what a
# merge copies from one store to another
_SESSION_COLUMNS = (
    "session_id, run_id, profile_id, profile_version, therapist, patient, sample, seed,"
    " status, error, n_turns, started_at, wall_s, config, meta"
)
_TURN_COLUMNS = (
    "turn_id, session_id, idx, speaker, text, latency_s, prompt_tokens, completion_tokens,"
    " cached, model, cues, meta"
)
_SCORE_COLUMNS = (
    "score_id, session_id, judge, rubric_id, rubric_version, prompt_fingerprint, sample,"
    " target, result, raw_outputs, error, prompt_tokens, completion_tokens, created_at"
)


def _tables(db: sqlite3.Connection) -> set[str]:
    return {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _has_column(db: sqlite3.Connection, table: str, column: str) -> bool:
    return any(row[1] == column for row in db.execute(f"PRAGMA table_info({table})"))


_ORDER = "profile_id, therapist, sample, session_id"  # how a run's sessions are listed


def _run_filter(run_id: str, status: str | None) -> tuple[str, tuple[Any, ...]]:
    """The WHERE clause (and its parameters) for a run's sessions, or those of one status."""
    if status is None:
        return "run_id = ?", (run_id,)
    return "run_id = ? AND status = ?", (run_id, status)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class RunStore:
    """Runs, sessions, turns and scores in one SQLite file.

    `read_only=True` opens an existing store through SQLite's read-only mode (the report
    and the viewer): nothing is created or migrated, and every write fails in SQLite
    itself. It still sees what a concurrent writer commits (the WAL is shared).
    """

    def __init__(self, path: Path | str | None = None, *, read_only: bool = False) -> None:
        self.path = Path(path) if path is not None else default_store_path()
        self.read_only = read_only
        if read_only:
            self._db = self._open_read_only()
            # an older store is read as it is: columns it lacks read as their defaults
            self._turn_meta = _has_column(self._db, "turns", "meta")
            self._provenance = _has_column(self._db, "runs", "provenance")
            self._lock = threading.Lock()
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not self.path.exists():
                os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA busy_timeout=10000")
            # Both checks come before the first write (WAL mode changes the file header).
            self._refuse_foreign_database()
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                self._db.close()
                raise StoreError(
                    f"store {self.path} has schema version {version}; this therapygym reads "
                    f"up to {SCHEMA_VERSION}: upgrade therapygym"
                )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._create_or_migrate(version)
        except sqlite3.DatabaseError as err:
            raise StoreError(f"store {self.path} cannot be opened: {err}") from None
        except OSError as err:  # its folder cannot be made, or the file created, here
            problem = write_problem(self.path) or err.strerror or str(err)
            raise StoreError(f"store {self.path} cannot be created: {problem}") from None
        self._turn_meta = self._provenance = True
        self._lock = threading.Lock()

    def _create_or_migrate(self, version: int) -> None:
        """A new file gets the current schema; a store of an older version gets each
        missing migration step. Either way in one transaction, with the version bump."""
        fresh = not _tables(self._db)
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if fresh:
                for statement in _statements(_SCHEMA + _STUDY_SCHEMA):
                    self._db.execute(statement)
            else:
                for step in range(max(version, 1) + 1, SCHEMA_VERSION + 1):
                    for statement in _MIGRATIONS[step]:
                        self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self._db.execute("COMMIT")
        except BaseException:
            # SQLite rolls back by itself on some errors (a full disk): a second rollback
            # would raise "no transaction is active" and hide the cause
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def _refuse_foreign_database(self) -> None:
        """Stop before writing to a SQLite file of some other program: a mistyped --store
        must not turn another app's database into WAL mode and add our tables to it."""
        tables = _tables(self._db)
        if tables and not tables >= _STORE_TABLES:
            self._db.close()
            raise StoreError(
                f"{self.path} is a SQLite database but not a therapygym run store (it lacks "
                "the runs, sessions, turns and scores tables): pass another --store path"
            )

    def _open_read_only(self) -> sqlite3.Connection:
        if not self.path.is_file():
            raise StoreError(
                f"no store at {self.path}: run something first, or pass --store PATH "
                f"(or set ${STORE_ENV})"
            )
        uri = self.path.resolve().as_uri() + "?mode=ro"
        try:
            db = sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA busy_timeout=10000")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            tables = _tables(db)
        except sqlite3.DatabaseError as err:
            raise StoreError(f"store {self.path} cannot be opened: {err}") from None
        if version > SCHEMA_VERSION:
            db.close()
            raise StoreError(
                f"store {self.path} has schema version {version}; this therapygym reads "
                f"up to {SCHEMA_VERSION}: upgrade therapygym"
            )
        if not tables >= _STORE_TABLES:
            db.close()
            raise StoreError(
                f"{self.path} is not a therapygym run store (it lacks the runs, sessions, "
                "turns and scores tables)"
            )
        return db

    def close(self) -> None:
        self._db.close()

    def data_version(self) -> int:
        """A number that changes whenever another connection commits to the store (for
        caching what was computed from it)."""
        with self._lock:
            return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    def change_stamp(self) -> tuple[int, int]:
        """Changes whenever anything is committed to the store, by another connection
        (`data_version`) or by this one (its count of changed rows, which `data_version`
        leaves out): for caching what a writer computed from its own store."""
        with self._lock:
            version = int(self._db.execute("PRAGMA data_version").fetchone()[0])
            return version, self._db.total_changes

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction under the lock: committed whole or not at all. A full
        disk becomes one line naming the store; SQLite has then already rolled back by
        itself, and a second rollback would raise "no transaction is active" and hide
        the cause."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as err:
                if getattr(err, "sqlite_errorcode", None) != sqlite3.SQLITE_FULL:
                    raise
                raise StoreError(
                    f"store {self.path}: the disk is full; nothing of this write was saved "
                    "(what was saved before is intact): free space and rerun to resume"
                ) from None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE) for a module that keeps its own tables
        in the store (the studio's study tables): committed whole or not at all, under the
        store's lock, so it never interleaves with another write of this process."""
        with self._write() as db:
            yield db

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """The connection under the store's lock, for reads of such a module."""
        with self._lock:
            yield self._db

    # -- runs ---------------------------------------------------------------------------

    def ensure_run(
        self, run_id: str, config: dict[str, Any], provenance: dict[str, Any] | None = None
    ) -> bool:
        """Create the run, or check that an existing run has the same configuration.

        `config` is the run's identity (a resume with another one is refused);
        `provenance` is how it was made (versions, revision, the resolved config), kept
        from the first time the run was created and never compared.
        Returns True when the run already existed (a resume).
        """
        text = canonical_json(config)
        with self._write() as db:
            row = db.execute("SELECT config FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO runs (run_id, created_at, config, provenance) VALUES (?, ?, ?, ?)",
                    (run_id, _now(), text, canonical_json(provenance or {})),
                )
                return False
        if row[0] != text:
            old, new = json.loads(row[0]), config
            changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            if "shard" in changed:  # a store holds one shard of a run, or all of it
                raise other_shard(run_id, self.path, old.get("shard"), new.get("shard"))
            raise StoreError(
                f"run '{run_id}' already exists in {self.path} with a different "
                f"{', '.join(changed)}; resume it with the same settings or pick a new --run-id"
            )
        return True

    def add_provenance(self, run_id: str, key: str, values: dict[str, Any]) -> None:
        """Merge `values` into the run's provenance under `key` (the judging of a run adds
        the fingerprints of the rubrics it used, run after run)."""
        with self._write() as db:
            row = db.execute("SELECT provenance FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is None:
                raise StoreError(f"no run '{run_id}' in {self.path}")
            provenance = json.loads(row[0])
            provenance[key] = {**provenance.get(key, {}), **values}
            db.execute(
                "UPDATE runs SET provenance = ? WHERE run_id = ?",
                (canonical_json(provenance), run_id),
            )

    def runs(self) -> list[RunInfo]:
        with self._lock:
            provenance = "r.provenance" if self._provenance else "'{}'"
            rows = self._db.execute(
                # COUNT(s.status): the `sessions_by_run` index alone answers (COUNT of the
                # session id reads every session row: 1 s against 0.06 s at 100,000)
                f"SELECT r.run_id, r.created_at, r.config, {provenance}, COUNT(s.status),"
                f" SUM(s.status IN {FINISHED}), SUM(s.status = 'failed')"
                " FROM runs r LEFT JOIN sessions s ON s.run_id = r.run_id"
                " GROUP BY r.run_id ORDER BY r.created_at, r.run_id"
            ).fetchall()
        return [
            RunInfo(
                run_id=r[0],
                created_at=r[1],
                config=json.loads(r[2]),
                provenance=json.loads(r[3]),
                sessions=r[4],
                finished=r[5] or 0,
                failed=r[6] or 0,
            )
            for r in rows
        ]

    def run(self, run_id: str) -> RunInfo:
        for info in self.runs():
            if info.run_id == run_id:
                return info
        known = ", ".join(r.run_id for r in self.runs()[-5:]) or "none"
        raise StoreError(f"no run '{run_id}' in {self.path} (recent runs: {known})")

    # -- sessions -----------------------------------------------------------------------

    def finished_session_ids(self, run_id: str) -> set[str]:
        """Sessions that need no rerun: completed or ended by the patient (not failed)."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT session_id FROM sessions WHERE run_id = ? AND status IN {FINISHED}",
                (run_id,),
            ).fetchall()
        return {r[0] for r in rows}

    def save_session(self, transcript: Transcript) -> None:
        """Write a session and its turns atomically (replacing an earlier attempt of the
        same session of the same run). A session id held by another run is refused: saving
        must never move a session out of the run that made it."""
        self.save_sessions([transcript])

    def save_sessions(self, transcripts: Iterable[Transcript]) -> None:
        """`save_session` for several sessions in one transaction: all are stored or none
        (an import must never leave half a file in the store)."""
        with self._write() as db:
            for t in transcripts:
                self._insert_session(db, t)

    def _insert_session(self, db: sqlite3.Connection, t: Transcript) -> None:
        """One session's rows, inside the caller's write transaction."""
        if t.run_id is None:
            raise ValueError("a stored session needs a run_id")
        turn_rows = [
            (
                turn.id,
                t.session_id,
                turn.index,
                turn.speaker,
                turn.text,
                turn.latency_s,
                turn.prompt_tokens,
                turn.completion_tokens,
                int(turn.cached),
                turn.model,
                json.dumps(turn.cues),
                json.dumps(turn.meta),
            )
            for turn in t.turns
        ]
        owner = db.execute(
            "SELECT run_id FROM sessions WHERE session_id = ?", (t.session_id,)
        ).fetchone()
        if owner is not None and owner[0] != t.run_id:
            raise StoreError(
                f"session {t.session_id} belongs to run '{owner[0]}' in {self.path}; "
                f"it cannot be saved into run '{t.run_id}' (no command moves or "
                "removes another run's sessions)"
            )
        db.execute("DELETE FROM sessions WHERE session_id = ?", (t.session_id,))
        db.execute(
            "INSERT INTO sessions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                t.session_id,
                t.run_id,
                t.profile_id,
                t.profile_version,
                t.therapist,
                t.patient,
                t.sample,
                t.seed,
                t.status.value,
                t.error,
                len(t.turns),
                t.started_at,
                t.wall_s,
                t.config.model_dump_json(),
                json.dumps(t.meta),
            ),
        )
        db.executemany(
            "INSERT INTO turns (turn_id, session_id, idx, speaker, text, latency_s,"
            " prompt_tokens, completion_tokens, cached, model, cues, meta)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            turn_rows,
        )

    def _transcripts(self, rows: list[tuple[Any, ...]]) -> list[Transcript]:
        """Rows of `SELECT * FROM sessions` as transcripts, with the turns of all of them
        read in one query. The caller holds the lock."""
        if not rows:
            return []
        meta = "meta" if self._turn_meta else "'{}'"  # a version-1 store has no turns.meta
        marks = ", ".join("?" * len(rows))
        turn_rows = self._db.execute(
            "SELECT session_id, turn_id, idx, speaker, text, latency_s, prompt_tokens,"
            f" completion_tokens, cached, model, cues, {meta} FROM turns"
            f" WHERE session_id IN ({marks}) ORDER BY session_id, idx",
            [row[0] for row in rows],
        ).fetchall()
        turns = {
            session_id: [
                Turn(
                    id=r[1],
                    index=r[2],
                    speaker=r[3],
                    text=r[4],
                    latency_s=r[5],
                    prompt_tokens=r[6],
                    completion_tokens=r[7],
                    cached=bool(r[8]),
                    model=r[9],
                    cues=json.loads(r[10]),
                    meta=json.loads(r[11]),
                )
                for r in group
            ]
            for session_id, group in groupby(turn_rows, key=lambda r: r[0])
        }
        return [
            Transcript(
                session_id=row[0],
                run_id=row[1],
                profile_id=row[2],
                profile_version=row[3],
                therapist=row[4],
                patient=row[5],
                sample=row[6],
                seed=row[7],
                status=SessionStatus(row[8]),
                error=row[9],
                started_at=row[11],
                wall_s=row[12],
                config=SessionConfig.model_validate_json(row[13]),
                meta=json.loads(row[14]),
                turns=turns.get(row[0], []),
            )
            for row in rows
        ]

    def session(self, session_id: str) -> Transcript:
        with self._lock:
            row = self._db.execute(
                "SELECT * FROM sessions WHERE session_id = ?", (session_id,)
            ).fetchone()
            if row is None:
                raise StoreError(f"no session '{session_id}' in {self.path}")
            return self._transcripts([row])[0]

    def sessions(self, run_id: str, *, status: str | None = None) -> Iterator[Transcript]:
        """A run's sessions in a stable order (profile, therapist, sample, session id),
        read `PAGE_SIZE` at a time, so that a run of any size streams in bounded memory.

        Each page continues after the last row of the one before (keyset pagination, on
        the `sessions_in_order` index), its turns come in one query, and the lock is held
        while a page is read, never while the caller works on it. A page sees what was
        committed when it was read: a session saved meanwhile after the current position
        is included, one before it is not, and none is yielded twice.
        """
        where, params = _run_filter(run_id, status)
        after: tuple[Any, ...] = ()
        while True:
            keyset = f" AND ({_ORDER}) > (?, ?, ?, ?)" if after else ""
            with self._lock:
                rows = self._db.execute(
                    f"SELECT * FROM sessions WHERE {where}{keyset} ORDER BY {_ORDER} LIMIT ?",
                    (*params, *after, PAGE_SIZE),
                ).fetchall()
                page = self._transcripts(rows)
            yield from page
            if len(rows) < PAGE_SIZE:
                return
            last = rows[-1]
            after = (last[2], last[4], last[6], last[0])  # profile_id, therapist, sample, id

    def session_heads(self, run_id: str, *, status: str | None = None) -> list[SessionHead]:
        """A run's sessions without their turns, in the order of `sessions`: for
        summaries and judging plans, which need to know the sessions but not read them."""
        where, params = _run_filter(run_id, status)
        columns = ", ".join(SessionHead.model_fields)  # each field is a column of sessions
        with self._lock:
            rows = self._db.execute(
                f"SELECT {columns} FROM sessions WHERE {where} ORDER BY {_ORDER}", params
            ).fetchall()
        return [SessionHead(**dict(zip(SessionHead.model_fields, r, strict=True))) for r in rows]

    def session_heads_page(
        self,
        run_id: str,
        *,
        offset: int = 0,
        limit: int = PAGE_SIZE,
        therapist: str | None = None,
        patient: str | None = None,
        status: str | None = None,
    ) -> tuple[list[SessionHead], int]:
        """One page of a run's session heads in the order of `sessions`, those of one
        therapist, patient profile and status when given, and how many match in all (the
        viewer's session list: a page costs the rows it shows, not the run)."""
        where, params = _run_filter(run_id, status)
        for column, value in (("therapist", therapist), ("profile_id", patient)):
            if value is not None:
                where += f" AND {column} = ?"
                params += (value,)
        columns = ", ".join(SessionHead.model_fields)
        with self._lock:
            total = self._db.execute(f"SELECT COUNT(*) FROM sessions WHERE {where}", params)
            count = int(total.fetchone()[0])
            rows = self._db.execute(
                f"SELECT {columns} FROM sessions WHERE {where} ORDER BY {_ORDER} LIMIT ? OFFSET ?",
                (*params, limit, offset),
            ).fetchall()
        heads = [SessionHead(**dict(zip(SessionHead.model_fields, r, strict=True))) for r in rows]
        return heads, count

    def iter_session_heads(
        self, run_id: str, *, batch: int = PAGE_SIZE
    ) -> Iterator[list[SessionHead]]:
        """A run's session heads in the order of `sessions`, `batch` at a time (keyset
        pagination, as `sessions` reads them): for work done per batch of sessions."""
        columns = ", ".join(SessionHead.model_fields)
        after: tuple[Any, ...] = ()
        while True:
            keyset = f" AND ({_ORDER}) > (?, ?, ?, ?)" if after else ""
            with self._lock:
                rows = self._db.execute(
                    f"SELECT {columns} FROM sessions WHERE run_id = ?{keyset}"
                    f" ORDER BY {_ORDER} LIMIT ?",
                    (run_id, *after, batch),
                ).fetchall()
            heads = [
                SessionHead(**dict(zip(SessionHead.model_fields, r, strict=True))) for r in rows
            ]
            if heads:
                yield heads
            if len(rows) < batch:
                return
            last = heads[-1]
            after = (last.profile_id, last.therapist, last.sample, last.session_id)

    def session_heads_of(self, session_ids: Sequence[str]) -> list[SessionHead]:
        """The heads of these sessions (in no particular order; unknown ids left out)."""
        columns = ", ".join(SessionHead.model_fields)
        rows: list[tuple[Any, ...]] = []
        with self._lock:
            for start in range(0, len(session_ids), 500):  # under SQLite's variable limit
                chunk = tuple(session_ids[start : start + 500])
                rows += self._db.execute(
                    f"SELECT {columns} FROM sessions"
                    f" WHERE session_id IN ({', '.join('?' * len(chunk))})",
                    chunk,
                ).fetchall()
        return [SessionHead(**dict(zip(SessionHead.model_fields, r, strict=True))) for r in rows]

    def session_values(self, run_id: str) -> dict[str, list[str]]:
        """The therapists, patient profiles and statuses a run's sessions have (sorted):
        what the viewer's filters offer, without reading the sessions."""
        values: dict[str, list[str]] = {}
        with self._lock:
            for key, column in (("therapist", "therapist"), ("patient", "profile_id"),
                                ("status", "status")):  # fmt: skip
                rows = self._db.execute(
                    f"SELECT DISTINCT {column} FROM sessions WHERE run_id = ? ORDER BY 1",
                    (run_id,),
                ).fetchall()
                values[key] = [r[0] for r in rows]
        return values

    # -- scores -------------------------------------------------------------------------

    def save_scores(self, records: list[ScoreRecord]) -> None:
        """Write one judgement unit (same session, judge, rubric, prompt and sample)
        atomically, replacing an earlier attempt of that unit."""
        if not records:
            return
        first = records[0]
        unit = (
            first.session_id,
            first.judge,
            first.rubric_id,
            first.rubric_version,
            first.prompt_fingerprint,
            first.sample,
        )
        rows = [
            (
                r.score_id,
                r.session_id,
                r.judge,
                r.rubric_id,
                r.rubric_version,
                r.prompt_fingerprint,
                r.sample,
                r.target,
                None if r.result is None else json.dumps(r.result),
                json.dumps(r.raw_outputs),
                r.error,
                r.prompt_tokens,
                r.completion_tokens,
                _now(),
            )
            for r in records
        ]
        with self._write() as db:
            db.execute(
                "DELETE FROM scores WHERE session_id = ? AND judge = ? AND rubric_id = ?"
                " AND rubric_version = ? AND prompt_fingerprint = ? AND sample = ?",
                unit,
            )
            db.executemany("INSERT INTO scores VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)

    def judged_units(self, run_id: str) -> set[tuple[str, str, str, str, str, int]]:
        """Judgement units of a run that are complete (they have rows and no errors)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT sc.session_id, sc.judge, sc.rubric_id, sc.rubric_version,"
                " sc.prompt_fingerprint, sc.sample FROM scores sc"
                " JOIN sessions s ON s.session_id = sc.session_id WHERE s.run_id = ?"
                " GROUP BY 1, 2, 3, 4, 5, 6 HAVING SUM(sc.error IS NOT NULL) = 0",
                (run_id,),
            ).fetchall()
        return {tuple(r) for r in rows}  # type: ignore[misc]

    def scores(
        self, run_id: str, rubric_id: str | None = None, *, session_id: str | None = None
    ) -> list[ScoreRecord]:
        """A run's score rows (optionally one rubric's, or one session's)."""
        where = "s.run_id = ?"
        params: tuple[Any, ...] = (run_id,)
        if session_id is not None:
            where += " AND sc.session_id = ?"
            params += (session_id,)
        if rubric_id is not None:
            where += " AND sc.rubric_id = ?"
            params += (rubric_id,)
        return self._score_records(where, params, raw=True)

    def _score_records(self, where: str, params: tuple[Any, ...], raw: bool) -> list[ScoreRecord]:
        """Score rows of `scores sc JOIN sessions s` matching `where`, in (session, score
        id) order; `raw=False` leaves the judges' raw output out (`[]`), which numbers and
        verdicts never read and which is most of a record's size. The caller holds no lock."""
        raw_column = "sc.raw_outputs" if raw else "'[]'"
        with self._lock:
            rows = self._db.execute(
                "SELECT sc.score_id, sc.session_id, sc.judge, sc.rubric_id, sc.rubric_version,"
                f" sc.prompt_fingerprint, sc.sample, sc.target, sc.result, {raw_column},"
                " sc.error, sc.prompt_tokens, sc.completion_tokens FROM scores sc"
                f" JOIN sessions s ON s.session_id = sc.session_id WHERE {where}"
                " ORDER BY sc.session_id, sc.score_id",
                params,
            ).fetchall()
        return [
            ScoreRecord(
                score_id=r[0],
                session_id=r[1],
                judge=r[2],
                rubric_id=r[3],
                rubric_version=r[4],
                prompt_fingerprint=r[5],
                sample=r[6],
                target=r[7],
                result=None if r[8] is None else json.loads(r[8]),
                raw_outputs=json.loads(r[9]),
                error=r[10],
                prompt_tokens=r[11],
                completion_tokens=r[12],
            )
            for r in rows
        ]

    def scores_of(
        self, session_ids: Sequence[str], *, rubric_id: str | None = None, raw: bool = True
    ) -> list[ScoreRecord]:
        """The score rows of these sessions (of one rubric when given), in the order of
        `scores`: a batch of sessions' judgements without the rest of their run."""
        out: list[ScoreRecord] = []
        for start in range(0, len(session_ids), 500):  # under SQLite's variable limit
            chunk = tuple(session_ids[start : start + 500])
            where = f"sc.session_id IN ({', '.join('?' * len(chunk))})"
            if rubric_id is not None:
                where += " AND sc.rubric_id = ?"
                chunk += (rubric_id,)
            out += self._score_records(where, chunk, raw)
        return sorted(out, key=lambda r: (r.session_id, r.score_id))

    def iter_scores(
        self, run_id: str, *, sessions: int = PAGE_SIZE, raw: bool = True
    ) -> Iterator[list[ScoreRecord]]:
        """A run's score rows in the order of `scores` (session id, then score id), those
        of `sessions` sessions at a time: the sessions are paged on their primary key and
        each page's rows are read (and sorted) alone, so a run of any size streams in time
        linear in its size."""
        after = ""
        while True:
            with self._lock:
                rows = self._db.execute(
                    "SELECT session_id FROM sessions WHERE run_id = ? AND session_id > ?"
                    " ORDER BY session_id LIMIT ?",
                    (run_id, after, sessions),
                ).fetchall()
            ids = [r[0] for r in rows]
            if ids and (records := self.scores_of(ids, raw=raw)):
                yield records
            if len(ids) < sessions:
                return
            after = ids[-1]

    def score_judges(self, run_id: str) -> list[str]:
        """The judges that scored a run (sorted)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT DISTINCT sc.judge FROM scores sc JOIN sessions s"
                " ON s.session_id = sc.session_id WHERE s.run_id = ? ORDER BY 1",
                (run_id,),
            ).fetchall()
        return [r[0] for r in rows]

    def rubric_versions(self, run_id: str, rubric_id: str) -> list[ScoreRecord]:
        """One usable record (a result, no error; raw output left out) per judge and
        version of a rubric in a run: enough to tell which version a summary of the
        whole run reads (`aggregate.ctrs_version`) before reading it batch by batch."""
        # the store's (judge, version) pairs from a scan of the `scores_by_unit` index alone
        # (milliseconds; joined to a run's sessions it is a seek per session, seconds at
        # 100,000), then one usable row of each in this run (the first one found)
        with self._lock:
            pairs = self._db.execute(
                "SELECT DISTINCT judge, rubric_version FROM scores WHERE rubric_id = ?",
                (rubric_id,),
            ).fetchall()
        found: list[str] = []
        with self._lock:
            for judge, version in pairs:  # unordered, so the first match ends the search
                row = self._db.execute(
                    "SELECT sc.score_id FROM scores sc JOIN sessions s"
                    " ON s.session_id = sc.session_id WHERE s.run_id = ? AND sc.rubric_id = ?"
                    " AND sc.judge = ? AND sc.rubric_version = ? AND sc.error IS NULL"
                    " AND sc.result IS NOT NULL LIMIT 1",
                    (run_id, rubric_id, judge, version),
                ).fetchone()
                if row is not None:
                    found.append(row[0])
        if not found:
            return []
        where = f"sc.score_id IN ({', '.join('?' * len(found))})"
        return self._score_records(where, tuple(found), raw=False)

    # -- merging ------------------------------------------------------------------------

    def merge_runs(
        self, source: RunStore, runs: dict[str, tuple[dict[str, Any], dict[str, Any]]]
    ) -> Counter[str]:
        """Copy runs of `source` (another store; `runs merge` opens it read-only) into
        this one, with their sessions, turns and scores, in one transaction: the input is
        merged whole or not at all.

        `runs` maps each run id to the config its run has here (checked against a run
        already here) and provenance to add to it (`{key: {...}}`, merged one level deep as
        `add_provenance` does). A new run keeps the source's creation time and provenance.
        What is here already stays (INSERT OR IGNORE: ids are content-addressed, so a row
        is the same wherever it was made), except where the source finished what is here
        unfinished: a session failed here and finished there, or a judgement unit with
        errors here and complete there, is replaced by the source's. Merging the same
        source twice changes nothing. A session finished in both but made by two attempts
        (another start time or length: a shard run again from scratch) keeps the one here,
        and the source's scores of it, which judged the other text, are not copied.
        Returns counts by "runs|sessions|scores copied", "... already there", "sessions|scores
        replaced", "sessions differing" and "scores of differing sessions".
        """
        counts: Counter[str] = Counter()
        with self._write() as db, source._lock:
            # one read transaction: one snapshot of the source, even while it is written
            source._db.execute("BEGIN")
            try:
                for run_id, (config, notes) in runs.items():
                    self._merge_run_row(db, source, run_id, config, notes, counts)
                    other = self._merge_sessions(db, source, run_id, counts)
                    self._merge_scores(db, source, run_id, other, counts)
            finally:
                source._db.execute("END")
        return counts

    def _merge_run_row(
        self,
        db: sqlite3.Connection,
        source: RunStore,
        run_id: str,
        config: dict[str, Any],
        notes: dict[str, Any],
        counts: Counter[str],
    ) -> None:
        provenance_column = "provenance" if source._provenance else "'{}'"
        created_at, theirs = source._db.execute(
            f"SELECT created_at, {provenance_column} FROM runs WHERE run_id = ?", (run_id,)
        ).fetchone()
        text = canonical_json(config)
        mine = db.execute(
            "SELECT config, provenance FROM runs WHERE run_id = ?", (run_id,)
        ).fetchone()
        if mine is not None and mine[0] != text:  # `merge.py` names the fields first
            raise StoreError(f"run '{run_id}' in {self.path} has another config")
        provenance = json.loads(theirs if mine is None else mine[1])
        for key, values in notes.items():
            provenance[key] = {**provenance.get(key, {}), **values}
        if mine is None:
            counts["runs copied"] += 1
            db.execute(
                "INSERT INTO runs (run_id, created_at, config, provenance) VALUES (?, ?, ?, ?)",
                (run_id, created_at, text, canonical_json(provenance)),
            )
            return
        counts["runs already there"] += 1
        if canonical_json(provenance) != mine[1]:
            db.execute(
                "UPDATE runs SET provenance = ? WHERE run_id = ?",
                (canonical_json(provenance), run_id),
            )

    def _merge_sessions(
        self, db: sqlite3.Connection, source: RunStore, run_id: str, counts: Counter[str]
    ) -> set[str]:
        """A run's sessions with their turns, session by session (in bounded memory).
        Returns the sessions finished here and there by different attempts."""
        turn_meta = "meta" if source._turn_meta else "'{}'"
        rows = source._db.execute(
            f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE run_id = ? ORDER BY session_id",
            (run_id,),
        )
        differing: set[str] = set()
        for row in rows:
            session_id, status = row[0], row[8]
            mine = db.execute(
                "SELECT run_id, status, n_turns, started_at, wall_s FROM sessions"
                " WHERE session_id = ?",
                (session_id,),
            ).fetchone()
            if mine is not None:
                if mine[0] != run_id:
                    raise StoreError(
                        f"session {session_id} of run '{run_id}' in {source.path} belongs "
                        f"to run '{mine[0]}' in {self.path}"
                    )
                if mine[1] in FINISHED and status in FINISHED and mine[2:] != row[10:13]:
                    counts["sessions differing"] += 1
                    differing.add(session_id)
                    continue
                if mine[1] in FINISHED or status not in FINISHED:
                    counts["sessions already there"] += 1
                    continue
                counts["sessions replaced"] += 1  # failed here, finished there
                db.execute("DELETE FROM sessions WHERE session_id = ?", (session_id,))
            else:
                counts["sessions copied"] += 1
            marks = ", ".join("?" * len(row))
            db.execute(f"INSERT INTO sessions ({_SESSION_COLUMNS}) VALUES ({marks})", row)
            turns = source._db.execute(
                f"SELECT {_TURN_COLUMNS.removesuffix('meta')}{turn_meta} FROM turns"
                " WHERE session_id = ? ORDER BY idx",
                (session_id,),
            )
            db.executemany(
                f"INSERT INTO turns ({_TURN_COLUMNS}) VALUES ({', '.join('?' * 12)})", turns
            )
        return differing

    def _merge_scores(
        self,
        db: sqlite3.Connection,
        source: RunStore,
        run_id: str,
        differing: set[str],
        counts: Counter[str],
    ) -> None:
        """A run's score rows, judgement unit by judgement unit (the unit is what is
        complete or not, as `judged_units` reads it)."""
        unit_columns = "session_id, judge, rubric_id, rubric_version, prompt_fingerprint, sample"
        rows = source._db.execute(
            f"SELECT {', '.join('sc.' + c for c in _SCORE_COLUMNS.split(', '))} FROM scores sc"
            " JOIN sessions s ON s.session_id = sc.session_id WHERE s.run_id = ?"
            f" ORDER BY {', '.join('sc.' + c for c in unit_columns.split(', '))}, sc.score_id",
            (run_id,),
        )
        unit_where = " AND ".join(f"{c} = ?" for c in unit_columns.split(", "))
        for unit, group in groupby(rows, key=lambda r: r[1:7]):
            theirs = list(group)
            if unit[0] in differing:  # they judged another text than the one kept here
                counts["scores of differing sessions"] += len(theirs)
                continue
            here, errors = db.execute(
                f"SELECT COUNT(*), SUM(error IS NOT NULL) FROM scores WHERE {unit_where}", unit
            ).fetchone()
            complete = all(r[10] is None for r in theirs)
            if here and not (errors and complete):
                counts["scores already there"] += len(theirs)
                continue
            if here:  # errors here, complete there
                counts["scores replaced"] += len(theirs)
                db.execute(f"DELETE FROM scores WHERE {unit_where}", unit)
            else:
                counts["scores copied"] += len(theirs)
            db.executemany(
                f"INSERT INTO scores ({_SCORE_COLUMNS}) VALUES ({', '.join('?' * 14)})", theirs
            )

    def integrity_check(self) -> str:
        with self._lock:
            return self._db.execute("PRAGMA integrity_check").fetchone()[0]
