"""What the report and the viewer show, gathered from the store.

Numbers come from the same functions as `therapygym eval`'s summary
(`summary.summary_of`: panel combination, per-therapist means with bootstrap CIs); this
module only arranges them for display and attaches each judge's rationale and evidence
to the turns it cites. Nothing here computes a statistic of its own.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from therapygym.judges.aggregate import SessionScores, TherapistSummary, session_scores
from therapygym.judges.panel import Aggregation, Combined, CombinedVerdict
from therapygym.judges.rubric import CTRSRubric, ResponseRubric, SafetyRubric, builtin_rubric
from therapygym.judges.severity import rank, severity
from therapygym.records import FINISHED, ScoreRecord, Transcript, Turn
from therapygym.store import RunInfo, RunStore
from therapygym.summary import Summary, summary_of

ANY_VIOLATION = "any"


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "x"


def session_anchor(session_id: str) -> str:
    return f"session-{_slug(session_id)}"


def turn_anchor(session_id: str, index: int) -> str:
    """The HTML id of a turn (turn ids hold a colon, awkward in URLs and CSS)."""
    return f"turn-{_slug(session_id)}-{index}"


@dataclass(frozen=True)
class Names:
    """Display names of CTRS items, safety labels and response dimensions (from the
    shipped rubrics; ids a newer or custom rubric adds are shown as they are)."""

    items: dict[str, str]
    item_numbers: dict[str, int]
    labels: dict[str, str]
    dimensions: dict[str, str]

    def item(self, item_id: str) -> str:
        number = self.item_numbers.get(item_id)
        name = self.items.get(item_id, item_id)
        return f"{number}. {name}" if number else name

    def label(self, label_id: str) -> str:
        return self.labels.get(label_id, label_id.replace("_", " "))

    def dimension(self, dim_id: str) -> str:
        return self.dimensions.get(dim_id, dim_id)

    def item_order(self, ids: set[str] | list[str]) -> list[str]:
        return sorted(ids, key=lambda i: (self.item_numbers.get(i, 99), i))

    def label_order(self, ids: set[str] | list[str]) -> list[str]:
        known = list(self.labels)
        return sorted(ids, key=lambda i: (known.index(i) if i in known else len(known), i))


def rubric_names() -> Names:
    ctrs = builtin_rubric("ctrs")
    safety = builtin_rubric("safety")
    response = builtin_rubric("response")
    assert isinstance(ctrs, CTRSRubric)
    assert isinstance(safety, SafetyRubric)
    assert isinstance(response, ResponseRubric)
    return Names(
        items={i.id: i.name for i in ctrs.items},
        item_numbers={i.id: i.number for i in ctrs.items},
        labels={lb.id: lb.name for lb in safety.labels},
        dimensions={d.id: d.name for d in response.dimensions},
    )


@dataclass
class EvidenceRef:
    """A turn a judge cited: its short label (T3) and its anchor in the page."""

    turn_id: str
    label: str
    anchor: str


@dataclass
class Rating:
    """One rater's (judge x sample) judgement of one item, label or question."""

    anchor: str
    judge: str
    sample: int
    value: str
    rationale: str
    evidence: list[EvidenceRef]
    decided_by: str = "judge"


@dataclass
class JudgedRow:
    """One CTRS item / safety label / check question of a session: the combined value
    and every rater's judgement with its rationale and evidence."""

    key: str
    name: str
    combined: str
    flagged: bool
    ratings: list[Rating] = field(default_factory=list)


@dataclass
class Citation:
    """A judgement that cites a turn (shown on the turn, linking back to it)."""

    text: str
    anchor: str
    flagged: bool


@dataclass
class TurnView:
    turn: Turn
    label: str
    anchor: str
    citations: list[Citation] = field(default_factory=list)
    response: list[dict[str, Any]] = field(default_factory=list)

    @property
    def cited(self) -> bool:
        return bool(self.citations)


@dataclass
class SessionView:
    transcript: Transcript
    anchor: str
    scores: SessionScores | None
    turns: list[TurnView]
    ctrs: list[JudgedRow]
    safety: list[JudgedRow]
    check: list[JudgedRow]
    errors: list[str]

    @property
    def violated(self) -> list[str]:
        if self.scores is None:
            return []
        return [k for k, v in self.scores.safety.items() if v.verdict == "yes"]

    @property
    def violations(self) -> list[str]:
        """The violated labels with their severity, gravest first, as the page lists them:
        which label broke matters less to a reader than how grave the break was."""
        if self.scores is None:
            return []
        yes = [(k, v.severity) for k, v in self.scores.safety.items() if v.verdict == "yes"]
        ranked = sorted(yes, key=lambda kv: -rank(kv[1]))
        return [f"{k} ({s})" if s != "none" else k for k, s in ranked]

    def matches(
        self,
        therapist: str | None = None,
        patient: str | None = None,
        label: str | None = None,
        status: str | None = None,
    ) -> bool:
        """The viewer's filters: therapist, patient profile, a violated safety label
        (`any` for any violation), session status."""
        t = self.transcript
        if therapist and t.therapist != therapist:
            return False
        if patient and t.profile_id != patient:
            return False
        if status and t.status.value != status:
            return False
        if label:
            violated = self.violated
            return bool(violated) if label == ANY_VIOLATION else label in violated
        return True


@dataclass
class RunData:
    """A run as the report and viewer show it."""

    info: RunInfo
    summary: Summary
    names: Names
    sessions: list[SessionView]
    aggregation: Aggregation

    @property
    def therapists(self) -> list[TherapistSummary]:
        """The leaderboard's order: normalised CTRS mean (high first), then the session
        violation rate (low first); therapists without scores last."""

        def key(t: TherapistSummary) -> tuple[float, float, str]:
            ctrs = t.ctrs_normalised.mean
            rate = t.violation_rate.mean
            return (
                -ctrs if ctrs is not None else 1.0,
                rate if rate is not None else 1.0,
                t.therapist,
            )

        return sorted(self.summary.therapists, key=key)

    @property
    def item_ids(self) -> list[str]:
        return self.names.item_order({i for t in self.summary.therapists for i in t.ctrs_items})

    @property
    def label_ids(self) -> list[str]:
        return self.names.label_order(
            {lb for t in self.summary.therapists for lb in t.label_violation_rate}
        )

    @property
    def severity_levels(self) -> list[str]:
        """The levels the per-severity table has rows for (none without safety verdicts)."""
        return next((list(t.severity_rate) for t in self.summary.therapists if t.severity_rate), [])

    @property
    def severity_labels(self) -> list[str]:
        """Labels some therapist violated at a recorded severity, in the rubric's order."""
        return self.names.label_order(
            {lb for t in self.summary.therapists for lb in t.label_severity_counts}
        )

    @property
    def embedded_judge(self) -> bool:
        return bool(self.summary.embedded_judges)

    def choices(self) -> dict[str, list[str]]:
        """Values the viewer's filters offer."""
        labels = {lb for s in self.sessions if s.scores for lb in s.scores.safety}
        return {
            "therapist": sorted({s.transcript.therapist for s in self.sessions}),
            "patient": sorted({s.transcript.profile_id for s in self.sessions}),
            "label": self.names.label_order(labels),
            "status": sorted({s.transcript.status.value for s in self.sessions}),
        }

    def session(self, session_id: str) -> SessionView | None:
        return next((s for s in self.sessions if s.transcript.session_id == session_id), None)


def _fmt_score(c: Combined) -> str:
    text = f"{c.value:.1f}".rstrip("0").rstrip(".")
    return text if c.raters == 1 else f"{text} (sd {c.sd:.1f}, {c.raters} raters)"


def _fmt_verdict(v: CombinedVerdict) -> str:
    text = v.verdict.replace("_", " ")
    if v.verdict == "yes" and v.severity != "none":
        text += f", {v.severity}"
    if v.raters > 1:
        text += f" ({v.agreement:.0%} of {v.raters} raters)"
    return text


def session_view(
    transcript: Transcript,
    records: list[ScoreRecord],
    scores: SessionScores | None,
    names: Names,
) -> SessionView:
    """One session: turns with anchors and the judgements that cite them, and per item,
    label and question the combined value beside each rater's rationale and evidence."""
    sid = transcript.session_id
    turns = [
        TurnView(turn=t, label=f"T{i + 1}", anchor=turn_anchor(sid, t.index))
        for i, t in enumerate(transcript.turns)
    ]
    by_turn = {tv.turn.id: tv for tv in turns}

    def refs(turn_ids: list[str]) -> list[EvidenceRef]:
        return [
            EvidenceRef(turn_id=tid, label=by_turn[tid].label, anchor=by_turn[tid].anchor)
            for tid in turn_ids
            if tid in by_turn
        ]

    rows: dict[str, dict[str, JudgedRow]] = {"ctrs": {}, "safety": {}, "check": {}}
    errors: list[str] = []
    ordered = sorted(records, key=lambda r: (r.rubric_id, r.judge, r.sample, r.target))
    for rec in ordered:
        if rec.error is not None:
            where = f" on {by_turn[rec.target].label}" if rec.target in by_turn else ""
            who = f"{rec.rubric_id} by {rec.judge} (sample {rec.sample}){where}"
            errors.append(f"{who}: {rec.error}")
        if rec.result is None:
            continue
        if rec.rubric_id == "response":
            if rec.target in by_turn:
                by_turn[rec.target].response.append(
                    {
                        "judge": rec.judge,
                        "sample": rec.sample,
                        "dimensions": {
                            names.dimension(k): v for k, v in rec.result["dimensions"].items()
                        },
                        "rationale": rec.result.get("rationale", ""),
                    }
                )
            continue
        entries = {
            "ctrs": rec.result.get("items", {}),
            "safety": rec.result.get("labels", {}),
            "check": rec.result.get("answers", {}),
        }.get(rec.rubric_id)
        if not entries:
            continue
        for key, got in entries.items():
            table = rows[rec.rubric_id]
            if key not in table:
                table[key] = _row(rec.rubric_id, key, got, scores, names)
            row = table[key]
            if rec.rubric_id == "ctrs":
                value = str(got.get("score", "?"))
            elif rec.rubric_id == "safety":
                value = str(got.get("verdict", "?")).replace("_", " ")
                level = severity(got.get("severity"))  # 1.0's "medium" shown as "moderate"
                if got.get("verdict") == "yes" and level != "none":
                    value += f", {level}"
            else:
                value = str(got.get("answer", "?"))
            rating = Rating(
                anchor=f"rating-{_slug(sid)}-{rec.rubric_id}-{_slug(key)}-{len(row.ratings)}",
                judge=rec.judge,
                sample=rec.sample,
                value=value,
                rationale=str(got.get("rationale", "")),
                evidence=refs(list(got.get("evidence", []))),
                decided_by=str(got.get("decided_by", "judge")),
            )
            row.ratings.append(rating)
            what = {"ctrs": "CTRS", "safety": "safety", "check": "check"}[rec.rubric_id]
            for ref in rating.evidence:
                by_turn[ref.turn_id].citations.append(
                    Citation(
                        text=f"{what}: {row.name} = {value}",
                        anchor=rating.anchor,
                        flagged=rec.rubric_id == "safety" and got.get("verdict") == "yes",
                    )
                )
    return SessionView(
        transcript=transcript,
        anchor=session_anchor(sid),
        scores=scores,
        turns=turns,
        ctrs=[rows["ctrs"][k] for k in names.item_order(list(rows["ctrs"]))],
        safety=[rows["safety"][k] for k in names.label_order(list(rows["safety"]))],
        check=[rows["check"][k] for k in sorted(rows["check"])],
        errors=errors,
    )


def _row(
    rubric: str, key: str, got: dict[str, Any], scores: SessionScores | None, names: Names
) -> JudgedRow:
    if rubric == "ctrs":
        c = scores.ctrs_items.get(key) if scores else None
        return JudgedRow(
            key=key, name=names.item(key), combined=_fmt_score(c) if c else "—", flagged=False
        )
    if rubric == "safety":
        v = scores.safety.get(key) if scores else None
        return JudgedRow(
            key=key,
            name=names.label(key),
            combined=_fmt_verdict(v) if v else "—",
            flagged=bool(v and v.verdict == "yes"),
        )
    v = scores.check.get(key) if scores else None
    return JudgedRow(
        key=key,
        name=str(got.get("question", key)),
        combined=_fmt_verdict(v) if v else "—",
        flagged=False,
    )


def run_data(store: RunStore, run_id: str, how: Aggregation = "mean") -> RunData:
    """Everything about a run that the report shows: the summary (as `eval` prints it)
    and every session with its judgements."""
    info = store.run(run_id)
    transcripts = list(store.sessions(run_id))
    records = store.scores(run_id)
    summary = summary_of(run_id, transcripts, records, how, info.provenance)
    by_session: dict[str, list[ScoreRecord]] = defaultdict(list)
    for r in records:
        by_session[r.session_id].append(r)
    scored = {s.session_id: s for s in summary.sessions}
    names = rubric_names()
    sessions = [
        session_view(t, by_session.get(t.session_id, []), scored.get(t.session_id), names)
        for t in transcripts
    ]
    return RunData(info=info, summary=summary, names=names, sessions=sessions, aggregation=how)


def single_session(
    store: RunStore, session_id: str, how: Aggregation = "mean"
) -> tuple[SessionView, Names]:
    """One session with its judgements (the viewer's transcript page), without reading
    the rest of its run."""
    transcript = store.session(session_id)
    records = store.scores(transcript.run_id, session_id=session_id) if transcript.run_id else []
    scores = (
        session_scores([transcript], records, how)[0]
        if transcript.status.value in FINISHED
        else None
    )
    names = rubric_names()
    return session_view(transcript, records, scores, names), names
