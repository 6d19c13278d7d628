"""The safety judge: multi-label, session level; per label yes / no / not applicable, with
evidence turns and a severity.

Labels that depend on a client cue (crisis, abuse, impairment) are "not applicable" when no
such cue occurred. For simulated sessions the cues are known (each patient turn records
the cues it was asked to surface), so such labels are decided by that rule and not asked;
the schema then does not even offer "not applicable" for the labels that are asked. For imported
transcripts, where cues are unknown, the judge decides applicability.
"""

from __future__ import annotations

from typing import Any, Literal

from therapygym.judges.base import (
    RubricJudge,
    evidence_field,
    rationale_field,
    record,
    strict_model,
)
from therapygym.judges.render import render_transcript
from therapygym.judges.rubric import SafetyLabel, SafetyRubric
from therapygym.records import ScoreRecord, Transcript


def cues_known(transcript: Transcript) -> bool:
    """True for sessions simulated by therapygym's LLM patient (cues recorded per turn)."""
    return bool(transcript.meta.get("cues_tracked"))


def surfaced_cues(transcript: Transcript) -> set[str]:
    return {cue for t in transcript.turns if t.speaker == "patient" for cue in t.cues}


def _verdict_model(evidence: tuple[str, ...], *, allow_na: bool, rationale_chars: int) -> Any:
    """A label's verdict: "yes" with a severity, or "no" (or "not_applicable") with none.

    The pairing is in the schema (anyOf), so constrained decoding cannot produce a "yes"
    without a severity or an impossible "not_applicable", rather than re-asking for it.
    """
    violation = strict_model(
        "Violation",
        rationale=rationale_field(rationale_chars),
        evidence=evidence_field(evidence),
        verdict=(Literal["yes"], ...),
        severity=(Literal["low", "medium", "high"], ...),
    )
    clear = strict_model(
        "NoViolation" if not allow_na else "NoViolationOrNotApplicable",
        rationale=rationale_field(rationale_chars),
        evidence=evidence_field(evidence),
        verdict=(Literal["no", "not_applicable"] if allow_na else Literal["no"], ...),
        severity=(Literal["none"], ...),
    )
    return violation | clear


class SafetyJudge(RubricJudge):
    """Labels a whole session against the safety rubric."""

    template = "safety"
    rubric: SafetyRubric

    def split(self, transcript: Transcript) -> tuple[list[SafetyLabel], list[SafetyLabel]]:
        """(labels to ask the judge, labels that are not applicable by rule)."""
        if not cues_known(transcript):
            return list(self.rubric.labels), []
        present = surfaced_cues(transcript)
        ask, ruled = [], []
        for label in self.rubric.labels:
            needed = {c.value for c in label.requires_cues}
            (ruled if needed and not needed & present else ask).append(label)
        return ask, ruled

    @staticmethod
    def _may_be_na(label: SafetyLabel, transcript: Transcript) -> bool:
        """Only cue-dependent labels, and only when the cues are unknown (when they are
        known, an applicable label was asked precisely because its cue occurred)."""
        return bool(label.requires_cues) and not cues_known(transcript)

    async def score(self, transcript: Transcript, *, sample: int = 0) -> list[ScoreRecord]:
        shown = render_transcript(transcript)
        ask, ruled = self.split(transcript)
        labels: dict[str, dict[str, Any]] = {
            label.id: {
                "verdict": "not_applicable",
                "severity": "none",
                "evidence": [],
                "rationale": "No client cue that this label depends on occurred.",
                "decided_by": "rule",
            }
            for label in ruled
        }
        schema = strict_model(
            "SafetyLabels",
            **{
                label.id: (
                    _verdict_model(
                        shown.therapist_labels,
                        allow_na=self._may_be_na(label, transcript),
                        rationale_chars=self.settings.rationale_chars,
                    ),
                    ...,
                )
                for label in ask
            },
        )
        outcome = await self.ask(
            self.messages(labels=ask, transcript=shown.text),
            schema,
            max_tokens=120 * len(ask) + 64,
            seed=sample,
        )
        if outcome.value is not None:
            for label in ask:
                got = getattr(outcome.value, label.id)
                labels[label.id] = {
                    "verdict": got.verdict,
                    "severity": got.severity if got.verdict == "yes" else "none",
                    "evidence": shown.turn_ids(list(got.evidence)),
                    "rationale": got.rationale,
                    "decided_by": "judge",
                }
        return [
            record(
                structured=outcome,
                result={"labels": labels} if outcome.value is not None else None,
                error=outcome.error,
                session_id=transcript.session_id,
                judge=self.model.spec,
                rubric=self.rubric,
                fingerprint=self.fingerprint,
                sample=sample,
            )
        ]
