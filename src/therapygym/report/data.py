"""What the report and the viewer show, gathered from the store.

Numbers come from the same functions as `therapygym eval`'s summary
(`summary.summarise` / `summary_of`: panel combination, per-therapist means with bootstrap
CIs); this module only arranges them for display and attaches each judge's rationale and
evidence to the turns it cites. Nothing here computes a statistic of its own. The report
(`report_data`) shows the whole run's numbers with a bounded sample of its transcripts
(`sample_ids`); `run_data` gathers every session.
"""

from __future__ import annotations

import re
import shlex
from collections import defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Any
from urllib.parse import quote

from therapygym.errors import ConfigError
from therapygym.judges.aggregate import SessionScores, TherapistSummary, session_scores
from therapygym.judges.panel import Aggregation, Combined, CombinedVerdict
from therapygym.judges.rubric import (
    CTRSRubric,
    ResponseRubric,
    SafetyLabel2,
    SafetyRubric,
    SafetyRubric2,
    builtin_rubric,
)
from therapygym.judges.severity import rank, severity
from therapygym.records import FINISHED, ScoreRecord, Transcript, Turn
from therapygym.store import RunInfo, RunStore, SessionHead
from therapygym.summary import Summary, judged_by, summarise, summary_of

ANY_VIOLATION = "any"
# The report's transcripts (`report_data`): a run of at most REPORT_SESSIONS sessions shows
# them all; a larger one shows REPORT_SESSIONS, first up to FLAGGED_CAP failed or violating
# sessions, then any, each spread over therapist x patient profile (`sample_ids`).
REPORT_SESSIONS = 200
FLAGGED_CAP = 100


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
class Applicability:
    """Where a safety@2.0 label's applicability came from (script, transcript, both or
    none), the cue kinds behind it and the client turns where the judge heard them."""

    source: str
    scripted: list[str]
    heard: list[str]
    turns: list[EvidenceRef]

    @property
    def text(self) -> str:
        if self.source == "none":
            return "applicability: no cue scripted or heard"
        parts = [f"applicability from {self.source}"]
        if self.scripted:
            parts.append("scripted: " + ", ".join(self.scripted))
        if self.heard:
            parts.append("heard: " + ", ".join(self.heard))
        return "; ".join(parts)


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
    applicability: Applicability | None = None
    severity_why: list[str] = field(default_factory=list)


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
class ChecklistCell:
    """One rater's answer to one checklist item (or to the gate question)."""

    value: str
    anchor: str
    required: bool = True
    evidence: list[EvidenceRef] = field(default_factory=list)
    meaning: str = ""

    @property
    def missing(self) -> bool:
        """A required step answered "no": what makes the label violated."""
        return self.required and self.value == "no"


@dataclass
class ChecklistRow:
    """A checklist item: its id, its wording in the rubric and every rater's answer."""

    key: str
    name: str
    question: str
    cells: list[ChecklistCell] = field(default_factory=list)


@dataclass
class ChecklistRater:
    """What one rater's checklist answers come to: the verdict the rubric's rule derived,
    the required items left undone, the severity and why, and where applicability came
    from."""

    judge: str
    sample: int
    rating_anchor: str
    verdict: str
    missing: list[str]
    severity: str
    severity_why: list[str]
    applicability: Applicability | None


@dataclass
class ChecklistView:
    """A checklist label of a safety@2.0 judgement (crisis_unaddressed), item by item:
    rows are the rubric's items, columns the raters."""

    key: str
    name: str
    rubric: str
    anchor: str
    verdict_rule: str
    gate_question: str
    gate_meanings: dict[str, str] = field(default_factory=dict)
    gate: list[ChecklistCell] = field(default_factory=list)
    items: list[ChecklistRow] = field(default_factory=list)
    raters: list[ChecklistRater] = field(default_factory=list)


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


def violated_labels(scores: SessionScores | None) -> list[str]:
    """The safety labels a session's combined scores find violated (none when unjudged)."""
    if scores is None:
        return []
    return [k for k, v in scores.safety.items() if v.verdict == "yes"]


def ranked_violations(scores: SessionScores | None) -> list[str]:
    """The violated labels with their severity, gravest first, as the page and the viewer's
    list show them: which label broke matters less to a reader than how grave the break was."""
    if scores is None:
        return []
    yes = [(k, v.severity) for k, v in scores.safety.items() if v.verdict == "yes"]
    ranked = sorted(yes, key=lambda kv: -rank(kv[1]))
    return [f"{k} ({s})" if s != "none" else k for k, s in ranked]


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
    checklists: list[ChecklistView] = field(default_factory=list)

    @property
    def violated(self) -> list[str]:
        return violated_labels(self.scores)

    @property
    def violations(self) -> list[str]:
        return ranked_violations(self.scores)

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


@dataclass(frozen=True)
class Sample:
    """Which of a run's sessions a report shows (`sample_ids`): `shown` of `total`, among
    them `flagged_shown` of the run's `flagged_total` failed or violating sessions, and the
    command that opens every session in the viewer."""

    shown: int
    total: int
    flagged_shown: int
    flagged_total: int
    flagged_cap: int
    view_command: str
    view_url: str

    @property
    def complete(self) -> bool:
        return self.shown == self.total


@dataclass
class RunData:
    """A run as the report and viewer show it: every session (`run_data`), or a sample
    of them (`report_data`, which says so in `sample`)."""

    info: RunInfo
    summary: Summary
    names: Names
    sessions: list[SessionView]
    aggregation: Aggregation
    sample: Sample | None = None

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
    checklists: dict[str, ChecklistView] = {}
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
            if rec.rubric_id == "safety":
                rating.applicability = _applicability(got.get("applicability"), refs)
                rating.severity_why = severity_reasons(got)
                label = _checklist_label(rec, key, got)
                if label is not None or "checklist" in got:
                    if key not in checklists:
                        checklists[key] = _checklist_view(sid, key, row.name, rec, label)
                    for cited, citation in _add_checklist_rater(checklists[key], rating, got, refs):
                        by_turn[cited.turn_id].citations.append(citation)
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
        checklists=[checklists[k] for k in names.label_order(list(checklists))],
    )


# -- safety@2.0: the checklist, applicability and severity as stored -------------------------


def _humanise(key: str) -> str:
    return key.replace("_", " ")


def _applicability(stored: Any, refs: Any) -> Applicability | None:
    """A cue label's applicability as safety@2.0 stores it (None for 1.0 and for labels
    that depend on no cue)."""
    if not isinstance(stored, dict) or "source" not in stored:
        return None
    return Applicability(
        source=str(stored["source"]),
        scripted=[str(c) for c in stored.get("scripted_cues", [])],
        heard=[str(c) for c in stored.get("heard_cues", [])],
        turns=refs(list(stored.get("cue_turns", []))),
    )


def severity_reasons(got: dict[str, Any]) -> list[str]:
    """Why a safety@2.0 violation has its severity: where the starting level came from
    (the judge's choice, or the label's default where the judge is not asked) and each
    severity rule that fired, with its clinical reason from the rubric. Empty for a
    label that was not violated and for safety@1.0 (which stored no basis)."""
    basis = got.get("severity_basis")
    if got.get("verdict") != "yes" or not isinstance(basis, dict):
        return []
    judged = basis.get("judged")
    reasons = [
        f"judge's choice: {judged}" if judged else f"the label's default: {basis.get('default')}"
    ]
    for rule in basis.get("rules", []):
        reasons.append(f"rule, at least {rule.get('at_least')}: {rule.get('why')}")
    return reasons


@cache
def _safety_rubric(version: str) -> SafetyRubric2 | None:
    """The shipped safety rubric of a stored version, if it has the 2.0 layout (None for
    1.0 and for versions this install does not ship)."""
    try:
        rubric = builtin_rubric("safety", version)
    except ConfigError:
        return None
    return rubric if isinstance(rubric, SafetyRubric2) else None


def _checklist_label(rec: ScoreRecord, key: str, got: dict[str, Any]) -> SafetyLabel2 | None:
    """The rubric's label `key` when it is a checklist label of the record's rubric
    version (its wording is read from there, not repeated here)."""
    rubric = _safety_rubric(rec.rubric_version)
    if rubric is None:
        return None
    label = next((lb for lb in rubric.labels if lb.id == key), None)
    return label if label is not None and label.checklist is not None else None


def _checklist_view(
    sid: str, key: str, name: str, rec: ScoreRecord, label: SafetyLabel2 | None
) -> ChecklistView:
    checklist = label.checklist if label is not None else None
    return ChecklistView(
        key=key,
        name=name,
        rubric=f"{rec.rubric_id}@{rec.rubric_version}",
        anchor=f"checklist-{_slug(sid)}-{_slug(key)}",
        verdict_rule=" ".join(checklist.verdict_rule.split()) if checklist else "",
        gate_question=" ".join(checklist.gate.question.split()) if checklist else "",
        gate_meanings={k: " ".join(v.split()) for k, v in checklist.gate.answers.items()}
        if checklist
        else {},
        items=[
            ChecklistRow(key=i.id, name=_humanise(i.id), question=" ".join(i.question.split()))
            for i in (checklist.items if checklist else [])
        ],
    )


def _add_checklist_rater(
    view: ChecklistView, rating: Rating, got: dict[str, Any], refs: Any
) -> list[tuple[EvidenceRef, Citation]]:
    """One rater's column of a checklist (its answers, or none where it found the label
    not applicable); returns the turns its answers cite, with the citation to show on each."""
    col = len(view.raters)
    stored = got.get("checklist") if isinstance(got.get("checklist"), dict) else {}
    answers = stored.get("items", {}) if isinstance(stored.get("items"), dict) else {}
    for item_id in answers:  # items a rubric this install lacks (or a newer one) added
        if item_id not in {row.key for row in view.items}:
            view.items.append(ChecklistRow(key=item_id, name=_humanise(item_id), question=""))
    gate_id = next((k for k in stored if k not in ("items", "missing")), None)
    gate_answer = str(stored[gate_id]) if gate_id else "—"
    view.gate.append(
        ChecklistCell(
            value=gate_answer,
            anchor=f"{view.anchor}-gate-{col}",
            meaning=view.gate_meanings.get(gate_answer, ""),
        )
    )
    cited: list[tuple[EvidenceRef, Citation]] = []
    for row in view.items:
        answer = answers.get(row.key)
        cell = ChecklistCell(value="—", anchor=f"{view.anchor}-{_slug(row.key)}-{col}")
        if isinstance(answer, dict):
            cell.value = str(answer.get("answer", "?"))
            cell.required = bool(answer.get("required", True))
            cell.evidence = refs(list(answer.get("turns", [])))
            for ref in cell.evidence:
                text = f"{view.name} checklist: {row.name} = {cell.value}"
                cited.append((ref, Citation(text=text, anchor=cell.anchor, flagged=False)))
        row.cells.append(cell)
    names = {row.key: row.name for row in view.items}
    view.raters.append(
        ChecklistRater(
            judge=rating.judge,
            sample=rating.sample,
            rating_anchor=rating.anchor,
            verdict=_humanise(str(got.get("verdict", "?"))),
            missing=[names.get(m, _humanise(m)) for m in stored.get("missing", [])],
            severity=str(got.get("severity", "none")),
            severity_why=rating.severity_why,
            applicability=rating.applicability,
        )
    )
    return cited


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


def run_data(
    store: RunStore,
    run_id: str,
    how: Aggregation = "mean",
    *,
    judges: Collection[str] | None = None,
) -> RunData:
    """Everything about a run that the report shows: the summary (as `eval` prints it)
    and every session with its judgements; those of `judges` only, when given (else every
    judge that scored the run, as one panel)."""
    info = store.run(run_id)
    transcripts = list(store.sessions(run_id))
    records = judged_by(run_id, store.scores(run_id), judges)
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


# -- the report's bounded sample of transcripts ------------------------------------------------


def sample_ids(
    heads: Iterable[SessionHead],
    flagged: Collection[str],
    *,
    limit: int = REPORT_SESSIONS,
    flagged_cap: int = FLAGGED_CAP,
) -> tuple[list[str], int, int, int]:
    """The sessions a report shows, in the order of `heads` (the run's order), with the
    run's session count, how many of those shown failed or violated a safety label, and
    how many in the run did (`flagged` holds the finished sessions that violated one).

    Every session when there are at most `limit`. Else, deterministically: failed and
    violating sessions first, up to `flagged_cap`, then any session, until `limit`; each
    time round by round over therapist x patient profile (sorted), the next session of
    each pairing in turn, so the sample spreads over every pairing rather than the first
    profiles of the run's order. Holds at most `limit` ids per pairing, whatever the run's
    size."""
    total = flagged_total = 0
    everyone: dict[tuple[str, str], list[tuple[int, str]]] = defaultdict(list)
    failing: dict[tuple[str, str], list[tuple[int, str]]] = defaultdict(list)
    marked: set[str] = set()  # the flagged sessions among those held
    for pos, h in enumerate(heads):
        total += 1
        pairing = (h.therapist, h.profile_id)
        if len(everyone[pairing]) < limit:
            everyone[pairing].append((pos, h.session_id))
        if h.status.value not in FINISHED or h.session_id in flagged:
            flagged_total += 1
            if len(failing[pairing]) < limit:
                failing[pairing].append((pos, h.session_id))
                marked.add(h.session_id)
    chosen: dict[str, int] = {}  # session id -> its position in the run
    _round_robin(failing, chosen, min(flagged_cap, limit))
    _round_robin(everyone, chosen, limit)
    shown = sorted(chosen, key=chosen.__getitem__)
    return shown, total, sum(sid in marked for sid in shown), flagged_total


def _round_robin(
    queues: dict[tuple[str, str], list[tuple[int, str]]], chosen: dict[str, int], until: int
) -> None:
    """Add to `chosen` the next session of each queue (in sorted order) not yet chosen,
    round by round, until it holds `until` or the queues run out."""
    ordered = [queues[k] for k in sorted(queues)]
    depth = 0
    while len(chosen) < until and any(depth < len(q) for q in ordered):
        for q in ordered:
            if depth < len(q) and len(chosen) < until:
                pos, sid = q[depth]
                chosen.setdefault(sid, pos)
        depth += 1


def report_data(
    store: RunStore,
    run_id: str,
    how: Aggregation = "mean",
    *,
    judges: Collection[str] | None = None,
    limit: int = REPORT_SESSIONS,
    flagged_cap: int = FLAGGED_CAP,
) -> RunData:
    """What the report shows: the run's summary (streamed, `summary.summarise`) and the
    transcripts of a bounded sample of its sessions (`sample_ids`) with their judgements,
    so a report of 100,000 sessions costs its summary and `limit` transcripts. The
    viewer (`therapygym view`) shows every session."""
    info = store.run(run_id)
    summary = summarise(store, run_id, how, judges=judges)
    flagged = {
        s.session_id for s in summary.sessions if any(v.verdict == "yes" for v in s.safety.values())
    }
    heads = (h for page in store.iter_session_heads(run_id) for h in page)
    ids, total, flagged_shown, flagged_total = sample_ids(
        heads, flagged, limit=limit, flagged_cap=flagged_cap
    )
    wanted = set(ids)
    scored = {s.session_id: s for s in summary.sessions if s.session_id in wanted}
    by_session: dict[str, list[ScoreRecord]] = defaultdict(list)
    for r in store.scores_of(ids, raw=False):
        if judges is None or r.judge in judges:
            by_session[r.session_id].append(r)
    names = rubric_names()
    sessions = [
        session_view(store.session(sid), by_session.get(sid, []), scored.get(sid), names)
        for sid in ids
    ]
    sample = Sample(
        shown=len(ids),
        total=total,
        flagged_shown=flagged_shown,
        flagged_total=flagged_total,
        flagged_cap=flagged_cap,
        view_command=f"therapygym view --store {shlex.quote(str(store.path))}",
        view_url=f"http://127.0.0.1:8765/runs/{quote(run_id, safe='')}",
    )
    return RunData(
        info=info, summary=summary, names=names, sessions=sessions, aggregation=how, sample=sample
    )
