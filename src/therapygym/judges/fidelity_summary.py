"""From patient-fidelity records to rates per patient model: what `patients audit` prints
and writes, and what the HTML report's "Patient fidelity" section shows (it calls this
module on the stored records; it computes nothing of its own).

Rates, each with a 95% Wilson interval (statsmodels), grouped by the patient model (the
session's patient label, `llm-patient:<spec>`) and the judge that audited it:

- in role: sessions with no out-of-role marker in any patient turn;
- schedule kept: scripted cues the simulator was told at their drawn turn, of the cues
  whose turn the session reached (bookkeeping: anything under 1 is a simulator bug);
- released: those cues the patient conveyed at that turn, as plainly as scripted;
- early: cues the patient conveyed before their turn, of all scripted cues (a leak: the
  therapist met the risk before the script put it there);
- style kept and resistance kept: sessions the judge found fully in character ("partly"
  counts as not kept);
- invented risk: sessions where the patient voiced a risk kind its profile lacks.

A cue rate counts cues, not sessions, so its interval treats the cues of one session as
independent; with at most a few cues per session that is the usual approximation, and the
per-cue counts are beside it. For each session with invented risk the report says whether
the safety judge's transcript-based applicability (safety@2.0, `heard_cues`) saw it:
"yes", "no" (safety@1.0 decides applicability from the script alone, so it never does),
or "not judged" when the run has no safety scores for that session.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any, Literal, Protocol

from pydantic import BaseModel, Field

from therapygym.patients.audit import PATIENT_LABEL_PREFIX
from therapygym.records import ScoreRecord
from therapygym.stats import Estimate

KIND = "patient_fidelity"
SafetySaw = Literal["yes", "no", "not judged"]
EMBEDDED_NOTE = (
    "audited by the embedded 135M model: these rates show the audit runs end to end, not "
    "how faithful a patient model is"
)


class SessionKeys(Protocol):
    """What the audit reads of a session (a `Transcript` or a `store.SessionHead`)."""

    @property
    def session_id(self) -> str: ...

    @property
    def patient(self) -> str: ...


def proportion(successes: int, trials: int) -> Estimate:
    """`successes / trials` with its 95% Wilson score interval, which stays inside [0, 1]
    and is usable at the small counts of an audit (no interval without trials)."""
    if trials == 0:
        return Estimate(mean=None, low=None, high=None, n=0)
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(successes, trials, alpha=0.05, method="wilson")
    return Estimate(mean=successes / trials, low=float(low), high=float(high), n=trials)


class InventedRisk(BaseModel):
    """A session where the patient voiced risk its profile does not carry."""

    session_id: str
    profile: str
    kinds: list[str]
    turns: list[str]
    safety_saw: SafetySaw
    seen_kinds: list[str] = Field(default_factory=list)


class FidelityGroup(BaseModel):
    """One patient model's rates under one judge."""

    patient: str
    judge: str
    sessions: int = Field(description="Sessions the judge audited (errors apart).")
    judge_errors: int
    in_role: Estimate
    schedule_kept: Estimate
    released: Estimate
    early: Estimate
    style_kept: Estimate
    resistance_kept: Estimate
    invented_risk: Estimate
    role_breaks: dict[str, int] = Field(description="Out-of-role matches by marker kind.")
    timings: dict[str, int] = Field(description="Scripted cues by timing.")
    invented: list[InventedRisk]

    @property
    def patient_model(self) -> str:
        """The model spec behind the patient label."""
        return self.patient.removeprefix(PATIENT_LABEL_PREFIX)


class FidelityReport(BaseModel):
    """The audit of one run (`patient_audit.json`)."""

    run_id: str
    rubric: str | None
    groups: list[FidelityGroup]
    not_simulated: int = Field(0, description="Finished sessions no LLM patient played.")
    notes: list[str] = Field(default_factory=list)


def safety_view(records: Iterable[ScoreRecord], invented: list[str]) -> tuple[SafetySaw, list[str]]:
    """Whether the safety judge's applicability saw any of `invented` in one session, from
    that session's safety records (and the kinds it saw)."""
    judged = [r for r in records if r.result is not None]
    if not judged:
        return "not judged", []
    seen: set[str] = set()
    for rec in judged:
        for label in (rec.result or {}).get("labels", {}).values():
            heard = (label.get("applicability") or {}).get("heard_cues", [])
            seen.update(set(heard) & set(invented))
    return ("yes" if seen else "no"), sorted(seen)


def _group(
    patient: str,
    judge: str,
    results: list[tuple[str, dict[str, Any]]],
    errors: int,
    safety: dict[str, list[ScoreRecord]],
) -> FidelityGroup:
    cues = [c for _, r in results for c in r["cues"]]
    reached = [c for c in cues if c["reached"]]
    invented = []
    for session_id, r in results:
        kinds = r["risk"]["invented"]
        if kinds:
            saw, seen = safety_view(safety.get(session_id, []), kinds)
            invented.append(
                InventedRisk(
                    session_id=session_id,
                    profile=r["profile"],
                    kinds=kinds,
                    turns=r["risk"]["turns"],
                    safety_saw=saw,
                    seen_kinds=seen,
                )
            )
    breaks: dict[str, int] = defaultdict(int)
    for _, r in results:
        for b in r["role_breaks"]:
            breaks[b["kind"]] += 1
    timings: dict[str, int] = defaultdict(int)
    for c in cues:
        timings[c["timing"]] += 1
    n = len(results)
    return FidelityGroup(
        patient=patient,
        judge=judge,
        sessions=n,
        judge_errors=errors,
        in_role=proportion(sum(r["in_role"] for _, r in results), n),
        schedule_kept=proportion(sum(c["told"] for c in reached), len(reached)),
        released=proportion(sum(c["released"] for c in reached), len(reached)),
        early=proportion(sum(c["timing"] == "early" for c in cues), len(cues)),
        style_kept=proportion(sum(r["style"]["kept"] == "yes" for _, r in results), n),
        resistance_kept=proportion(sum(r["resistance"]["kept"] == "yes" for _, r in results), n),
        invented_risk=proportion(len(invented), n),
        role_breaks=dict(sorted(breaks.items())),
        timings=dict(sorted(timings.items())),
        invented=invented,
    )


def fidelity_report(
    run_id: str,
    sessions: Iterable[SessionKeys],
    records: Iterable[ScoreRecord],
    *,
    embedded: bool = False,
) -> FidelityReport:
    """The audit of a run from its finished `sessions` and score `records` (the run's
    patient-fidelity records, and its safety records for the invented-risk check). A
    session audited more than once by one judge counts once (its first complete record)."""
    patients = {s.session_id: s.patient for s in sessions}
    fidelity: dict[tuple[str, str], ScoreRecord] = {}
    safety: dict[str, list[ScoreRecord]] = defaultdict(list)
    for rec in records:
        if rec.session_id not in patients:
            continue
        if rec.rubric_id == "safety":
            safety[rec.session_id].append(rec)
        elif rec.rubric_id == KIND:
            key = (rec.session_id, rec.judge)
            if key not in fidelity or (fidelity[key].result is None and rec.result is not None):
                fidelity[key] = rec
    by_group: dict[tuple[str, str], list[ScoreRecord]] = defaultdict(list)
    for (session_id, judge), rec in fidelity.items():
        by_group[(patients[session_id], judge)].append(rec)
    groups = [
        _group(
            patient,
            judge,
            [(r.session_id, r.result) for r in recs if r.result is not None],
            sum(r.result is None for r in recs),
            safety,
        )
        for (patient, judge), recs in sorted(by_group.items())
    ]
    refs = sorted({f"{r.rubric_id}@{r.rubric_version}" for r in fidelity.values()})
    return FidelityReport(
        run_id=run_id,
        rubric=", ".join(refs) or None,
        groups=groups,
        not_simulated=sum(not p.startswith(PATIENT_LABEL_PREFIX) for p in patients.values()),
        notes=[EMBEDDED_NOTE] if embedded else [],
    )
