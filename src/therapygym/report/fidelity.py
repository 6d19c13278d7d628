"""The report's "Patient fidelity" section: the audit of a run's simulated patients
(`patients audit`), shown when the store holds patient-fidelity scores for the run.

The numbers come from `judges.fidelity_summary.fidelity_report`, the function the audit
command prints and writes, applied to the stored records; nothing is computed here.
"""

from __future__ import annotations

from therapygym.judges.fidelity_summary import KIND, FidelityReport, fidelity_report
from therapygym.records import FINISHED
from therapygym.store import RunStore
from therapygym.summary import embedded_judges

# the rows of the section's table: (label, FidelityGroup field), as the terminal shows them
RATES = (
    ("in role", "sessions", "in_role"),
    ("told at its drawn turn", "cues", "schedule_kept"),
    ("released at its turn", "cues", "released"),
    ("released early", "cues", "early"),
    ("style kept", "sessions", "style_kept"),
    ("resistance kept", "sessions", "resistance_kept"),
    ("invented risk", "sessions", "invented_risk"),
)


def fidelity_of(store: RunStore, run_id: str) -> FidelityReport | None:
    """The audit of `run_id` from its stored records; None when it was never audited."""
    audited = store.scores(run_id, KIND)
    if not audited:
        return None
    heads = [h for h in store.session_heads(run_id) if h.status.value in FINISHED]
    judges = {r.judge for r in audited}
    embedded = bool(embedded_judges(judges, store.run(run_id).provenance))
    records = audited + store.scores(run_id, "safety")
    return fidelity_report(run_id, heads, records, embedded=embedded)
