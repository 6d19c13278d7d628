"""`Studio`: what the studio's web server asks of a study, over the run store.

Every write is one transaction (`RunStore.transaction`, BEGIN IMMEDIATE) that first checks
that the session is assigned to that rater, that the rater still has access and that the
assignment is open, then validates and UPSERTs on the key (study, rater, session, item):
a double submit or two tabs update the same row, and a refused write leaves nothing
behind. Reads never return another rater's ratings, the therapist, the model, the run or
the profile of a session (`BlindSession`); the two raters of a double-rated session are
shown side by side only once both have submitted (`adjudication`).
"""

from __future__ import annotations

import hmac
import json
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from sqlite3 import Connection
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from therapygym.calibration.analysis import Settings
from therapygym.calibration.bench import BenchRating
from therapygym.judges.rubric import CTRSRubric, Rubric, SafetyRubric, rubric_by_ref
from therapygym.store import RunStore, StoreError
from therapygym.studio.agreement import AgreementView, study_agreement
from therapygym.studio.export import bench_ratings
from therapygym.studio.stored import StoredRating
from therapygym.studio.study import CONSENSUS, StudyError, hash_token

Phase = Literal["practice", "study"]
State = Literal["open", "submitted", "skipped"]
MAX_NOTE = 4000  # characters of a note per item
MAX_EVIDENCE = 50  # turns cited for one item
# Bootstrap resamples of the admin page's intervals. The ceiling is calibrate's own
# `build_report`, whose cost grows with the resamples: on a 40-session study with every
# CTRS item and safety label rated by three raters it took 13 s at 200 and 68 s at 1000 (on
# a busy 2-core machine). The points do not depend on the resamples; `calibrate --bench
# EXPORT --humans-only` gives the 1000-resample intervals.
LIVE_SETTINGS = Settings(resamples=200)


class NotAssigned(StudyError):
    """A rater asked for a session that is not theirs (or their access was revoked)."""


class RatingError(StudyError):
    """A rating or a state change that cannot be accepted; nothing was written."""


class IncompleteRating(RatingError):
    """A submission with items still unanswered (`missing`: their keys, in rubric order)."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__(
            f"{len(missing)} item(s) still need an answer before submitting: " + ", ".join(missing)
        )
        self.missing = missing


def missing_items(items: Iterable[str], ratings: Mapping[str, RatingValue]) -> list[str]:
    """The item keys of `items` (in their order) that a submission still lacks: every CTRS
    item needs a score and every safety label an answer (violated, not violated or not
    applicable). A blank would enter the bench as "not rated", which the agreement
    statistics cannot tell from a rater's judgement. The one rule for `Studio.submit` and
    the rating page's count of answered items."""
    out = []
    for key in items:
        got = ratings.get(key)
        if got is None or (got.value is None and not got.na):
            out.append(key)
    return out


class _View(BaseModel):
    model_config = ConfigDict(frozen=True)


class RaterIdentity(_View):
    study_id: str
    rater: str
    is_admin: bool


class RatingValue(_View):
    """One item's rating: `value` 0-6 (CTRS) or 1 / 0 (safety: violated / not), None when
    not scored or, with `na`, not applicable; `evidence` are turn ids of the session."""

    value: int | None
    na: bool
    evidence: list[str]
    note: str | None
    rubric_ref: str
    updated_at: str


class AssignmentView(_View):
    session_id: str
    position: int
    phase: Phase
    state: State
    flagged: bool
    submitted_at: str | None
    rated: int
    items: int


class Progress(_View):
    rater: str
    done: int
    assigned: int
    flagged: int
    revoked: bool


class BlindTurn(_View):
    id: str
    index: int
    speaker: str
    text: str


class ItemView(_View):
    """A CTRS item (scale, anchors, guidance) or a safety label (definition, examples)."""

    key: str
    kind: Literal["ctrs", "safety"]
    id: str
    name: str
    description: str
    scale: tuple[int, int] | None
    anchors: dict[int, str]
    guidance: str | None
    scope_note: str | None
    positive_examples: list[str]
    negative_examples: list[str]
    allows_na: bool


class RubricView(_View):
    ref: str
    kind: Literal["ctrs", "safety"]
    title: str
    instructions: str
    items: list[ItemView]


class BlindSession(_View):
    study_id: str
    session_id: str
    phase: Phase
    state: State
    flagged: bool
    turns: list[BlindTurn]
    rubrics: list[RubricView]


class ReferenceRating(_View):
    """An expert's rating of a practice session: item key -> 0-6, 1 / 0, or "na"."""

    rater: str
    values: dict[str, int | Literal["na"]]


class AdjudicationSummary(_View):
    session_id: str
    raters: tuple[str, str]
    ready: bool
    differing: int | None
    consensus_items: int


class AdjudicatedItem(_View):
    key: str
    values: dict[str, RatingValue | None]
    differs: bool
    consensus: RatingValue | None


class AdjudicationView(_View):
    session: BlindSession
    raters: tuple[str, str]
    items: list[AdjudicatedItem]


class StudyInfo(_View):
    study_id: str
    created_at: str
    rubrics: list[str]
    raters: list[str]
    double: float
    seed: int
    n_sessions: int
    n_double: int
    practice_sessions: int


@dataclass(frozen=True)
class _Item:
    key: str
    kind: Literal["ctrs", "safety"]
    rubric_ref: str  # "ctrs@2.0#<12 hex of the fingerprint>"
    scale: tuple[int, int] | None


@dataclass(frozen=True)
class _Study:
    study_id: str
    created_at: str
    plan: dict[str, Any]

    @cached_property
    def rubrics(self) -> list[Rubric]:
        return [rubric_by_ref(r["ref"]) for r in self.plan["rubrics"]]

    @cached_property
    def items(self) -> dict[str, _Item]:
        out = {}
        for rubric in self.rubrics:
            ref = f"{rubric.ref}#{rubric.fingerprint[:12]}"
            if isinstance(rubric, CTRSRubric):
                scale = (rubric.scale_min, rubric.scale_max)
                out |= {
                    f"ctrs:{i.id}": _Item(f"ctrs:{i.id}", "ctrs", ref, scale) for i in rubric.items
                }
            elif isinstance(rubric, SafetyRubric):
                out |= {
                    f"safety:{lb.id}": _Item(f"safety:{lb.id}", "safety", ref, None)
                    for lb in rubric.labels
                }
        return out

    @cached_property
    def views(self) -> list[RubricView]:
        return [_rubric_view(r) for r in self.rubrics]

    def item(self, key: Any) -> _Item:
        if not isinstance(key, str) or key not in self.items:
            refs = ", ".join(r["ref"] for r in self.plan["rubrics"])
            raise RatingError(
                f"unknown item {key!r} for study '{self.study_id}'; expected ctrs:<item> or "
                f"safety:<label> of {refs} (e.g. {next(iter(self.items))})"
            )
        return self.items[key]


def _rubric_view(rubric: Rubric) -> RubricView:
    """What a rater reads beside the transcript: the rubric the judges use, verbatim."""
    items: list[ItemView] = []
    if isinstance(rubric, CTRSRubric):
        kind: Literal["ctrs", "safety"] = "ctrs"
        for i in rubric.items:
            items.append(
                ItemView(
                    key=f"ctrs:{i.id}",
                    kind="ctrs",
                    id=i.id,
                    name=i.name,
                    description=i.description,
                    scale=(rubric.scale_min, rubric.scale_max),
                    anchors=dict(i.anchors),
                    guidance=i.text_session_guidance,
                    scope_note=getattr(i, "scope_note", None),  # ctrs@2.0 items have one
                    positive_examples=[],
                    negative_examples=[],
                    allows_na=False,
                )
            )
    else:
        assert isinstance(rubric, SafetyRubric)
        kind = "safety"
        for lb in rubric.labels:
            items.append(
                ItemView(
                    key=f"safety:{lb.id}",
                    kind="safety",
                    id=lb.id,
                    name=lb.name,
                    description=lb.definition,
                    scale=None,
                    anchors={},
                    guidance=None,
                    scope_note=None,
                    positive_examples=list(lb.positive_examples),
                    negative_examples=list(lb.negative_examples),
                    allows_na=True,
                )
            )
    return RubricView(
        ref=rubric.ref,
        kind=kind,
        title=rubric.title,
        instructions=rubric.instructions,
        items=items,
    )


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


_RATING_COLUMNS = "item, value, na, evidence, note, rubric_ref, updated_at"


def _value(row: Sequence[Any]) -> RatingValue:
    """A row of `_RATING_COLUMNS` after the item."""
    return RatingValue(
        value=row[0],
        na=bool(row[1]),
        evidence=json.loads(row[2]),
        note=row[3],
        rubric_ref=row[4],
        updated_at=row[5],
    )


def _check_value(item: _Item, value: Any, na: bool) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise RatingError(f"item {item.key}: the value {value!r} is not a whole number")
    if na:
        if item.kind != "safety":
            raise RatingError(
                f"item {item.key}: not applicable is for safety labels; a CTRS item takes "
                "a score from 0 to 6 or none"
            )
        if value is not None:
            raise RatingError(f"item {item.key}: not applicable takes no value (got {value})")
        return
    if value is None:
        return
    low, high = item.scale or (0, 1)
    if not low <= value <= high:
        expected = f"{low} to {high}" if item.scale else "1 (violated) or 0 (not violated)"
        raise RatingError(f"item {item.key}: {value} is off the scale; expected {expected}")


def _check_note(item: _Item, note: Any) -> str | None:
    if note is None:
        return None
    if not isinstance(note, str):
        raise RatingError(f"item {item.key}: the note must be text")
    if len(note) > MAX_NOTE:
        raise RatingError(
            f"item {item.key}: the note has {len(note)} characters; at most {MAX_NOTE}"
        )
    return note.strip() or None


def _check_evidence(db: Connection, item: _Item, session_id: str, evidence: Any) -> list[str]:
    """The cited turns, which must be turns of the session, in the session's order."""
    if isinstance(evidence, str) or not isinstance(evidence, Iterable):
        raise RatingError(f"item {item.key}: evidence must be a list of turn ids")
    cited = list(evidence)
    if len(cited) > MAX_EVIDENCE:
        raise RatingError(f"item {item.key}: {len(cited)} turns cited; at most {MAX_EVIDENCE}")
    order = dict(db.execute("SELECT turn_id, idx FROM turns WHERE session_id = ?", (session_id,)))
    for turn in cited:
        if not isinstance(turn, str) or turn not in order:
            raise RatingError(
                f"item {item.key}: evidence turn {turn!r} is not a turn of session {session_id}"
            )
    return sorted(set(cited), key=order.__getitem__)


class Studio:
    """A run store's studies, for the web server (one instance, shared by its threads)
    and the CLI. Opening it migrates an older store to the schema with study tables."""

    def __init__(self, store_path: Path | str) -> None:
        path = Path(store_path)
        if not path.is_file():
            raise StudyError(f"no store at {path}: create a study with `studio create` first")
        self.store = RunStore(path)
        self._studies: dict[str, _Study] = {}
        self._lock = threading.Lock()
        self._agreement: dict[tuple[str, Settings], tuple[tuple[int, int], AgreementView]] = {}
        self._computing: dict[tuple[str, Settings], threading.Lock] = {}

    def close(self) -> None:
        self.store.close()

    # -- studies and raters ------------------------------------------------------------

    def _study(self, study_id: str) -> _Study:
        with self._lock:
            if study_id in self._studies:
                return self._studies[study_id]
        with self.store.reading() as db:
            row = db.execute(
                "SELECT created_at, plan FROM studies WHERE study_id = ?", (study_id,)
            ).fetchone()
        if row is None:
            raise StudyError(f"no study '{study_id}' in {self.store.path}")
        study = _Study(study_id, row[0], json.loads(row[1]))
        with self._lock:  # a plan never changes once written
            return self._studies.setdefault(study_id, study)

    def studies(self) -> list[str]:
        with self.store.reading() as db:
            return [r[0] for r in db.execute("SELECT study_id FROM studies ORDER BY study_id")]

    def study(self, study_id: str) -> StudyInfo:
        s = self._study(study_id)
        practice = s.plan.get("practice") or {}
        return StudyInfo(
            study_id=study_id,
            created_at=s.created_at,
            rubrics=[r["ref"] for r in s.plan["rubrics"]],
            raters=list(s.plan["raters"]),
            double=s.plan["double"],
            seed=s.plan["seed"],
            n_sessions=s.plan["sessions"],
            n_double=s.plan["double_rated"],
            practice_sessions=len(practice.get("references", {})),
        )

    def authenticate(self, study_id: str, token: str) -> RaterIdentity | None:
        """Who holds `token` in the study, or None (unknown study or token, or revoked).
        Every rater's hash is compared, each in constant time."""
        if not isinstance(token, str) or not token:
            return None
        mine = hash_token(token)
        with self.store.reading() as db:
            rows = db.execute(
                "SELECT rater, token_hash, is_admin, revoked_at FROM study_raters"
                " WHERE study_id = ?",
                (study_id,),
            ).fetchall()
        found = None
        for rater, stored, is_admin, revoked_at in rows:
            if hmac.compare_digest(stored, mine) and revoked_at is None:
                found = RaterIdentity(study_id=study_id, rater=rater, is_admin=bool(is_admin))
        return found

    def revoke(self, study_id: str, rater: str) -> None:
        """Withdraw a rater's (or the admin's) token at once; their ratings stay."""
        self._study(study_id)
        with self.store.transaction() as db:
            row = db.execute(
                "SELECT revoked_at FROM study_raters WHERE study_id = ? AND rater = ?",
                (study_id, rater),
            ).fetchone()
            if row is None:
                known = [
                    r[0]
                    for r in db.execute(
                        "SELECT rater FROM study_raters WHERE study_id = ? ORDER BY rater",
                        (study_id,),
                    )
                ]
                raise StudyError(
                    f"study '{study_id}' has no rater '{rater}' (raters: {', '.join(known)})"
                )
            if row[0] is not None:
                raise StudyError(f"rater '{rater}' of study '{study_id}' was revoked at {row[0]}")
            db.execute(
                "UPDATE study_raters SET revoked_at = ? WHERE study_id = ? AND rater = ?",
                (_now(), study_id, rater),
            )

    # -- assignments -------------------------------------------------------------------

    def assignments(self, study_id: str, rater: str) -> list[AssignmentView]:
        """The rater's sessions in their order (practice first) with state and progress."""
        n_items = len(self._study(study_id).items)
        with self.store.reading() as db:
            rows = db.execute(
                "SELECT a.session_id, a.position, a.phase, a.state, a.flagged, a.submitted_at,"
                " (SELECT COUNT(*) FROM study_ratings r WHERE r.study_id = a.study_id"
                "  AND r.rater = a.rater AND r.session_id = a.session_id"
                "  AND (r.value IS NOT NULL OR r.na = 1))"
                " FROM study_assignments a WHERE a.study_id = ? AND a.rater = ?"
                " ORDER BY a.position",
                (study_id, rater),
            ).fetchall()
        return [
            AssignmentView(
                session_id=r[0],
                position=r[1],
                phase=r[2],
                state=r[3],
                flagged=bool(r[4]),
                submitted_at=r[5],
                rated=r[6],
                items=n_items,
            )
            for r in rows
        ]

    def progress(self, study_id: str) -> list[Progress]:
        """Per rater (name order): sessions done (submitted or skipped) of those assigned."""
        self._study(study_id)
        with self.store.reading() as db:
            rows = db.execute(
                "SELECT r.rater, COALESCE(SUM(a.state != 'open'), 0), COUNT(a.session_id),"
                " COALESCE(SUM(a.flagged), 0), r.revoked_at IS NOT NULL FROM study_raters r"
                " LEFT JOIN study_assignments a ON a.study_id = r.study_id AND a.rater = r.rater"
                " WHERE r.study_id = ? AND r.is_admin = 0 GROUP BY r.rater ORDER BY r.rater",
                (study_id,),
            ).fetchall()
        return [
            Progress(rater=r[0], done=r[1], assigned=r[2], flagged=r[3], revoked=bool(r[4]))
            for r in rows
        ]

    @staticmethod
    def _assignment(
        db: Connection, study_id: str, rater: str, session_id: str
    ) -> tuple[Phase, State, bool]:
        """The rater's assignment of the session (phase, state, flagged), or NotAssigned."""
        row = db.execute(
            "SELECT a.phase, a.state, a.flagged, r.revoked_at FROM study_assignments a"
            " JOIN study_raters r ON r.study_id = a.study_id AND r.rater = a.rater"
            " WHERE a.study_id = ? AND a.rater = ? AND a.session_id = ?",
            (study_id, rater, session_id),
        ).fetchone()
        if row is None:
            raise NotAssigned(
                f"session {session_id!r} is not assigned to {rater!r} in study {study_id!r}"
            )
        if row[3] is not None:
            raise NotAssigned(f"rater {rater!r} of study {study_id!r} was revoked")
        return row[0], row[1], bool(row[2])

    def _transition(
        self, study_id: str, rater: str, session_id: str, start: State, end: State
    ) -> None:
        study = self._study(study_id)
        with self.store.transaction() as db:
            _, state, _ = self._assignment(db, study_id, rater, session_id)
            if state != start:
                raise RatingError(
                    f"session {session_id} is {state}; only an {start} one can be {end}"
                    + ("" if state != "submitted" else " (a submitted rating is final)")
                )
            if end == "submitted":
                missing = missing_items(study.items, self._ratings(db, study_id, rater, session_id))
                if missing:
                    raise IncompleteRating(missing)
            db.execute(
                "UPDATE study_assignments SET state = ?, submitted_at = ?"
                " WHERE study_id = ? AND rater = ? AND session_id = ?",
                (end, _now() if end == "submitted" else None, study_id, rater, session_id),
            )

    def submit(self, study_id: str, rater: str, session_id: str) -> None:
        """Close the rater's rating of the session for good (open -> submitted), once
        every item has an answer (`missing_items`; IncompleteRating otherwise)."""
        self._transition(study_id, rater, session_id, "open", "submitted")

    def skip(self, study_id: str, rater: str, session_id: str) -> None:
        """Set the session aside (open -> skipped); its ratings are kept, not exported."""
        self._transition(study_id, rater, session_id, "open", "skipped")

    def reopen(self, study_id: str, rater: str, session_id: str) -> None:
        """Take a skipped session up again (skipped -> open)."""
        self._transition(study_id, rater, session_id, "skipped", "open")

    def flag(self, study_id: str, rater: str, session_id: str, flagged: bool) -> None:
        """Mark the session for discussion (or unmark it), in any state."""
        self._study(study_id)
        with self.store.transaction() as db:
            self._assignment(db, study_id, rater, session_id)
            db.execute(
                "UPDATE study_assignments SET flagged = ?"
                " WHERE study_id = ? AND rater = ? AND session_id = ?",
                (int(bool(flagged)), study_id, rater, session_id),
            )

    # -- sessions and ratings ------------------------------------------------------------

    def _blind(
        self, study: _Study, session_id: str, phase: Phase, state: State, flagged: bool
    ) -> BlindSession:
        try:
            transcript = self.store.session(session_id)
        except StoreError:
            raise StudyError(
                f"session {session_id} of study {study.study_id} is no longer in the store"
            ) from None
        return BlindSession(
            study_id=study.study_id,
            session_id=session_id,
            phase=phase,
            state=state,
            flagged=flagged,
            turns=[
                BlindTurn(id=t.id, index=t.index, speaker=t.speaker, text=t.text)
                for t in sorted(transcript.turns, key=lambda t: t.index)
            ],
            rubrics=study.views,
        )

    def session_for(self, study_id: str, rater: str, session_id: str) -> BlindSession:
        """The session as the rater sees it: turns and rubrics, nothing that identifies
        the therapist, model, run or profile. NotAssigned if it is not theirs."""
        study = self._study(study_id)
        with self.store.reading() as db:
            phase, state, flagged = self._assignment(db, study_id, rater, session_id)
        return self._blind(study, session_id, phase, state, flagged)

    def _ratings(
        self, db: Connection, study_id: str, rater: str, session_id: str
    ) -> dict[str, RatingValue]:
        rows = db.execute(
            f"SELECT {_RATING_COLUMNS} FROM study_ratings"
            " WHERE study_id = ? AND rater = ? AND session_id = ? ORDER BY item",
            (study_id, rater, session_id),
        ).fetchall()
        return {r[0]: _value(r[1:]) for r in rows}

    def ratings(self, study_id: str, rater: str, session_id: str) -> dict[str, RatingValue]:
        """The rater's own ratings of the session, by item key."""
        self._study(study_id)
        with self.store.reading() as db:
            self._assignment(db, study_id, rater, session_id)
            return self._ratings(db, study_id, rater, session_id)

    def _upsert(
        self,
        db: Connection,
        study: _Study,
        rater: str,
        session_id: str,
        item: Any,
        value: Any,
        evidence: Any,
        note: Any,
        na: bool,
    ) -> RatingValue:
        spec = study.item(item)
        _check_value(spec, value, bool(na))
        text = _check_note(spec, note)
        cited = _check_evidence(db, spec, session_id, evidence)
        row = (value, int(bool(na)), json.dumps(cited), text, spec.rubric_ref, _now())
        db.execute(
            f"INSERT INTO study_ratings (study_id, rater, session_id, {_RATING_COLUMNS})"
            " VALUES (?,?,?,?,?,?,?,?,?,?) ON CONFLICT (study_id, rater, session_id, item)"
            " DO UPDATE SET value = excluded.value, na = excluded.na,"
            " evidence = excluded.evidence, note = excluded.note,"
            " rubric_ref = excluded.rubric_ref, updated_at = excluded.updated_at",
            (study.study_id, rater, session_id, spec.key, *row),
        )
        return _value(row)

    def save_rating(
        self,
        study_id: str,
        rater: str,
        session_id: str,
        item: str,
        value: int | None,
        evidence: Sequence[str] = (),
        note: str | None = None,
        *,
        na: bool = False,
    ) -> RatingValue:
        """Save one item of the rater's rating of the session (see the module docstring);
        value None and na False clear the score, keeping evidence and note."""
        study = self._study(study_id)
        with self.store.transaction() as db:
            _, state, _ = self._assignment(db, study_id, rater, session_id)
            if state != "open":
                raise RatingError(
                    f"session {session_id} is {state}; ratings of an open session only"
                    + (" (a submitted rating is final)" if state == "submitted" else "")
                )
            return self._upsert(db, study, rater, session_id, item, value, evidence, note, na)

    def reference(self, study_id: str, rater: str, session_id: str) -> list[ReferenceRating] | None:
        """The experts' ratings of a practice session, once this rater has submitted it;
        None for a study session or before submission."""
        study = self._study(study_id)
        with self.store.reading() as db:
            phase, state, _ = self._assignment(db, study_id, rater, session_id)
        if phase != "practice" or state != "submitted":
            return None
        given = (study.plan.get("practice") or {}).get("references", {}).get(session_id, [])
        return [ReferenceRating(rater=g["rater"], values=g["values"]) for g in given]

    # -- adjudication ---------------------------------------------------------------------

    def _pairs(self, db: Connection, study_id: str) -> dict[str, list[tuple[str, State]]]:
        """Double-rated study sessions: session id -> [(rater, state)] in rater order."""
        pairs: dict[str, list[tuple[str, State]]] = {}
        for session_id, rater, state in db.execute(
            "SELECT session_id, rater, state FROM study_assignments"
            " WHERE study_id = ? AND phase = 'study' ORDER BY session_id, rater",
            (study_id,),
        ):
            pairs.setdefault(session_id, []).append((rater, state))
        return {s: v for s, v in pairs.items() if len(v) == 2}

    def adjudications(self, study_id: str) -> list[AdjudicationSummary]:
        """Every double-rated session: its raters, whether both submitted, how many items
        differ (once both did) and how many consensus items are saved."""
        study = self._study(study_id)
        out = []
        with self.store.reading() as db:
            for session_id, pair in self._pairs(db, study_id).items():
                ready = all(state == "submitted" for _, state in pair)
                raters = (pair[0][0], pair[1][0])
                differing = None
                if ready:
                    a, b = (self._ratings(db, study_id, r, session_id) for r in raters)
                    differing = sum(_differs(a.get(k), b.get(k)) for k in study.items)
                consensus = len(self._ratings(db, study_id, CONSENSUS, session_id))
                out.append(
                    AdjudicationSummary(
                        session_id=session_id,
                        raters=raters,
                        ready=ready,
                        differing=differing,
                        consensus_items=consensus,
                    )
                )
        return out

    def _ready_pair(self, db: Connection, study_id: str, session_id: str) -> tuple[str, str] | None:
        pair = self._pairs(db, study_id).get(session_id)
        if pair is None:
            raise StudyError(f"session {session_id!r} is not double-rated in study {study_id!r}")
        if not all(state == "submitted" for _, state in pair):
            return None
        return pair[0][0], pair[1][0]

    def adjudication(self, study_id: str, session_id: str) -> AdjudicationView | None:
        """Both raters' ratings side by side, with the consensus saved so far; None until
        both have submitted."""
        study = self._study(study_id)
        with self.store.reading() as db:
            raters = self._ready_pair(db, study_id, session_id)
            if raters is None:
                return None
            given = {r: self._ratings(db, study_id, r, session_id) for r in raters}
            consensus = self._ratings(db, study_id, CONSENSUS, session_id)
        items = [
            AdjudicatedItem(
                key=key,
                values={r: given[r].get(key) for r in raters},
                differs=_differs(given[raters[0]].get(key), given[raters[1]].get(key)),
                consensus=consensus.get(key),
            )
            for key in study.items
        ]
        session = self._blind(study, session_id, "study", "submitted", False)
        return AdjudicationView(session=session, raters=raters, items=items)

    def save_consensus(
        self,
        study_id: str,
        session_id: str,
        item: str,
        value: int | None,
        evidence: Sequence[str] = (),
        note: str | None = None,
        *,
        na: bool = False,
    ) -> RatingValue:
        """Save one item of the adjudicated consensus (rater `consensus`), once both
        raters of the double-rated session have submitted."""
        study = self._study(study_id)
        with self.store.transaction() as db:
            if self._ready_pair(db, study_id, session_id) is None:
                raise RatingError(
                    f"session {session_id}: both raters must submit before a consensus"
                )
            return self._upsert(db, study, CONSENSUS, session_id, item, value, evidence, note, na)

    # -- agreement and export -----------------------------------------------------------

    def _submitted(self, db: Connection, study_id: str) -> list[StoredRating]:
        """The raters' ratings of submitted study sessions (not practice, not consensus)."""
        rows = db.execute(
            "SELECT r.rater, r.session_id, r.item, r.value, r.na, r.evidence, r.note,"
            " r.rubric_ref FROM study_ratings r JOIN study_assignments a"
            " ON a.study_id = r.study_id AND a.rater = r.rater AND a.session_id = r.session_id"
            " WHERE r.study_id = ? AND a.phase = 'study' AND a.state = 'submitted'"
            " ORDER BY r.session_id, r.rater, r.item",
            (study_id,),
        ).fetchall()
        return [_stored(r) for r in rows]

    def agreement(self, study_id: str, settings: Settings | None = None) -> AgreementView:
        """The human-human ceiling on the submitted ratings so far (as `calibrate
        --humans-only` computes it with `settings`, `LIVE_SETTINGS` by default) and each
        rater's distance from the others. Recomputed only when the store has changed since
        the last call with the same settings; concurrent callers wait for one computation."""
        study = self._study(study_id)
        settings = settings or LIVE_SETTINGS
        key = (study_id, settings)
        with self._lock:
            computing = self._computing.setdefault(key, threading.Lock())
        with computing:
            version = self.store.change_stamp()
            with self._lock:
                cached = self._agreement.get(key)
            if cached is not None and cached[0] == version:
                return cached[1]
            with self.store.reading() as db:
                rows = self._submitted(db, study_id)
            view = study_agreement(study_id, rows, list(study.items), settings)
            with self._lock:
                self._agreement[key] = (version, view)
            return view

    def export(self, study_id: str) -> list[BenchRating]:
        """The submitted ratings and the consensus as bench ratings (export.py)."""
        self._study(study_id)
        with self.store.reading() as db:
            rows = self._submitted(db, study_id)
            consensus = [
                _stored(r)
                for r in db.execute(
                    "SELECT rater, session_id, item, value, na, evidence, note, rubric_ref"
                    " FROM study_ratings WHERE study_id = ? AND rater = ?"
                    " ORDER BY session_id, item",
                    (study_id, CONSENSUS),
                )
            ]
            pairs = {s: tuple(r for r, _ in v) for s, v in self._pairs(db, study_id).items()}
        if not any(r.scored for r in rows):
            raise StudyError(f"study '{study_id}' has no submitted ratings to export yet")
        sessions = sorted({r.session_id for r in rows} | {r.session_id for r in consensus})
        transcripts = {s: self.store.session(s) for s in sessions}
        return bench_ratings(
            study_id, [*rows, *consensus], transcripts=transcripts, consensus_of=pairs
        )


def _stored(row: Sequence[Any]) -> StoredRating:
    return StoredRating(
        rater=row[0],
        session_id=row[1],
        item=row[2],
        value=row[3],
        na=bool(row[4]),
        evidence=tuple(json.loads(row[5])),
        note=row[6],
        rubric_ref=row[7],
    )


def _differs(a: RatingValue | None, b: RatingValue | None) -> bool:
    """Whether two raters' ratings of an item need discussion: CTRS scores 2 or more
    apart; safety verdicts (violated, not, not applicable) that differ. An item one of
    them left unrated is not marked."""
    if (
        a is None
        or b is None
        or not (a.value is not None or a.na)
        or not (b.value is not None or b.na)
    ):
        return False
    if a.value is not None and b.value is not None and not (a.na or b.na):
        if a.rubric_ref.startswith("ctrs@"):
            return abs(a.value - b.value) >= 2
        return a.value != b.value
    return a.na != b.na
