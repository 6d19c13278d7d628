"""A run's summary: every stored score of its finished sessions, combined per session and
per therapist with bootstrap CIs. What `eval` and `judge` print, and what the report, the
viewer and the exports read (they never reach the runner or the models).

`summarise` streams: it reads a run's sessions and their scores a page at a time, without
the judges' raw output, folds each session into its combined scores and those into one
tally per therapist (`aggregate.TherapistTally`: float columns of the numbers the CIs
need), and keeps each session's scores packed (`PackedSessions`). Memory then grows by
a few hundred bytes per session, whatever the judges wrote: 178 MB peak at 100,000
sessions (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import Any, overload

from therapygym.artefacts import atomic_path
from therapygym.judges.aggregate import (
    SessionScores,
    TherapistSummary,
    TherapistTally,
    ctrs_version,
    score_session,
    session_scores,
    therapist_summaries,
)
from therapygym.judges.panel import Aggregation
from therapygym.records import FINISHED, ScoreRecord, Transcript
from therapygym.store import RunStore, SessionHead, StoreError

PACK_SIZE = 256  # sessions compressed together in `PackedSessions`


class PackedSessions(Sequence[SessionScores]):
    """Sessions' combined scores, appended in order and kept as zlib-compressed JSON,
    `PACK_SIZE` sessions to a block: about 65 bytes a session against 14 KB as objects
    (1.4 GB at 100,000 sessions). Reading one decompresses its block; iterating decodes
    one block at a time, so a consumer never holds more than a block of objects."""

    def __init__(self) -> None:
        self._blocks: list[bytes] = []
        self._open: list[str] = []  # the block being filled, as JSON lines
        self._len = 0

    def append(self, scores: SessionScores) -> None:
        self._open.append(scores.model_dump_json())
        self._len += 1
        if len(self._open) == PACK_SIZE:
            self._blocks.append(zlib.compress("\n".join(self._open).encode("utf-8")))
            self._open = []

    def _block(self, b: int) -> list[str]:
        if b == len(self._blocks):
            return self._open
        return zlib.decompress(self._blocks[b]).decode("utf-8").split("\n")

    def __len__(self) -> int:
        return self._len

    @overload
    def __getitem__(self, index: int) -> SessionScores: ...
    @overload
    def __getitem__(self, index: slice) -> list[SessionScores]: ...
    def __getitem__(self, index: int | slice) -> SessionScores | list[SessionScores]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(self._len))]
        if index < 0:
            index += self._len
        if not 0 <= index < self._len:
            raise IndexError("session index out of range")
        line = self._block(index // PACK_SIZE)[index % PACK_SIZE]
        return SessionScores.model_validate_json(line)

    def __iter__(self) -> Iterator[SessionScores]:
        for b in range(len(self._blocks) + 1):
            for line in self._block(b):
                yield SessionScores.model_validate_json(line)

    def __eq__(self, other: object) -> bool:
        """Equal to a sequence of the same scores, as a list is (so two summaries of one
        run compare equal); two packs of the same scores hold the same bytes."""
        if isinstance(other, PackedSessions):
            return (self._blocks, self._open) == (other._blocks, other._open)
        if not isinstance(other, Sequence) or len(other) != self._len:
            return NotImplemented if not isinstance(other, Sequence) else False
        return all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]  # mutable, as a list


@dataclass
class Summary:
    run_id: str
    judges: list[str]
    sessions: Sequence[SessionScores]  # a list, or `PackedSessions` from `summarise`
    therapists: list[TherapistSummary]
    # the judges among `judges` that are the embedded 135M model: their scores carry no
    # clinical meaning, and every place that shows them says so
    embedded_judges: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return "".join(self.json_chunks())

    def write_json(self, path: Path) -> Path:
        """`to_json` written to `path` (atomically) a session at a time: at 100,000
        sessions the text is hundreds of MB, which `to_json` would hold at once."""
        with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as out:
            out.writelines(self.json_chunks())
        return path

    def json_chunks(self) -> Iterator[str]:
        """The summary's JSON (`json.dumps(..., indent=2)` of the whole, to the byte) in
        pieces: the head, then one piece per session, so the sessions are never all held
        as dicts."""
        body: dict[str, Any] = {"run_id": self.run_id, "judges": self.judges}
        if self.embedded_judges:
            body["note"] = (
                f"Scores from the embedded 135M model ({', '.join(self.embedded_judges)}) "
                "carry no clinical meaning."
            )
        body["therapists"] = [t.model_dump(mode="json") for t in self.therapists]
        if not self.sessions:
            body["sessions"] = []
            yield json.dumps(body, indent=2)
            return
        head = json.dumps(body, indent=2)
        yield head[:-2] + ',\n  "sessions": ['  # the head without its closing "\n}"
        sep = "\n    "
        for k, s in enumerate(self.sessions):
            text = json.dumps(s.model_dump(mode="json"), indent=2)
            yield ("," if k else "") + sep + text.replace("\n", sep)
        yield "\n  ]\n}"


def embedded_judges(judges: Iterable[str], provenance: Mapping[str, Any]) -> list[str]:
    """Which of `judges` are the embedded model, as the run recorded when they scored it
    (a models-file name is resolved then, with the file that judging used). A judge the
    run has no record of (runs judged before 0.2) counts as embedded when its spec names
    the local backend, the one spelling such runs could use."""
    recorded = provenance.get("judges", {})
    return sorted(
        j for j in judges if (recorded[j]["embedded"] if j in recorded else j.startswith("local:"))
    )


def summarise(
    store: RunStore,
    run_id: str,
    how: Aggregation = "mean",
    *,
    judges: Collection[str] | None = None,
) -> Summary:
    """Aggregate the stored scores of a run: those of `judges` (judge specs) when given,
    else of every judge that scored it (then all judges and samples form one panel).

    Streams (see the module's docstring): the sessions' heads a page at a time, each
    page's scores without raw judge output, folded at once. The CTRS version is the whole
    run's, found first (`RunStore.rubric_versions`), so each session reads the version
    the run's summary reads. The numbers are `summary_of`'s on the same store."""
    known = store.score_judges(run_id)
    _check_judges(run_id, known, judges)
    versions = [r for r in store.rubric_versions(run_id, "ctrs") if _kept(r, judges)]
    version = ctrs_version(versions)
    sessions = PackedSessions()
    tallies: dict[str, TherapistTally] = {}
    judged: set[str] = set()
    for heads in store.iter_session_heads(run_id):
        records = [
            r for r in store.scores_of([h.session_id for h in heads], raw=False) if _kept(r, judges)
        ]
        judged.update(r.judge for r in records)  # as `summary_of`: unfinished sessions' too
        by_session = {sid: list(rs) for sid, rs in groupby(records, key=lambda r: r.session_id)}
        for head in heads:
            if head.status.value not in FINISHED:
                continue
            scores = score_session(head, by_session.get(head.session_id, []), how, version)
            sessions.append(scores)
            if head.therapist not in tallies:
                tallies[head.therapist] = TherapistTally()
            tallies[head.therapist].add(scores)
    return Summary(
        run_id=run_id,
        judges=sorted(judged),
        sessions=sessions,
        therapists=[tallies[t].summary(t) for t in sorted(tallies)],
        embedded_judges=embedded_judges(judged, store.run(run_id).provenance),
    )


def _kept(record: ScoreRecord, judges: Collection[str] | None) -> bool:
    """Whether a summary reads `record`: `judges`' (every judge's for None), never a
    patient rubric's."""
    return record.rubric_id not in PATIENT_RUBRICS and (judges is None or record.judge in judges)


def _check_judges(run_id: str, scored: Iterable[str], judges: Collection[str] | None) -> None:
    """A judge that did not score the run is an error naming the judges that did, never
    an empty result."""
    if judges is None:
        return
    scored = set(scored)
    if unknown := sorted(set(judges) - scored):
        known = ", ".join(sorted(scored)) or "none"
        raise StoreError(
            f"run '{run_id}' has no scores by judge {', '.join(unknown)} (judges: {known})"
        )


def judged_by(
    run_id: str, records: list[ScoreRecord], judges: Collection[str] | None
) -> list[ScoreRecord]:
    """The records of `judges` (judge specs), or all of them for None; a judge that did not
    score the run is an error naming the judges that did, never an empty result."""
    if judges is None:
        return records
    _check_judges(run_id, {r.judge for r in records}, judges)
    return [r for r in records if r.judge in judges]


PATIENT_RUBRICS = frozenset({"patient_fidelity"})
"""Rubrics that judge the simulated patient, not the therapist (`patients audit`): their
judges are not the run's therapist judges and their scores are in no therapist's numbers."""


def summary_of(
    run_id: str,
    sessions: Iterable[SessionHead | Transcript],
    records: list[ScoreRecord],
    how: Aggregation = "mean",
    provenance: Mapping[str, Any] | None = None,
) -> Summary:
    """`summarise` for a run's sessions (transcripts, or heads without turns) and scores
    already read from the store (failed sessions are left out of the numbers), with the
    run's provenance, which says which judges were the embedded model."""
    finished = [s for s in sessions if s.status.value in FINISHED]
    records = [r for r in records if r.rubric_id not in PATIENT_RUBRICS]
    scored = session_scores(finished, records, how)
    judges = sorted({r.judge for r in records})
    return Summary(
        run_id=run_id,
        judges=judges,
        sessions=scored,
        therapists=therapist_summaries(scored),
        embedded_judges=embedded_judges(judges, provenance or {}),
    )
