"""The report's "Patient fidelity" section: shown, with the audit's rates and the invented
risk, when the store holds patient-fidelity scores for the run; absent otherwise."""

from __future__ import annotations

from pathlib import Path

from therapygym.records import ScoreRecord, SessionStatus, Transcript, Turn
from therapygym.report.html import write_report
from therapygym.store import RunStore

RUN = "audited"


def _store(path: Path, *, audited: bool) -> RunStore:
    store = RunStore(path)
    store.ensure_run(RUN, {"therapists": ["rule-based"], "patient_model": "openai:m"})
    for n in range(2):
        sid = f"s{n}"
        store.save_session(
            Transcript(
                session_id=sid, run_id=RUN, profile_id="dep-01-maya", profile_version=2,
                therapist="rule-based", patient="llm-patient:openai:m", sample=n,
                status=SessionStatus.COMPLETED, meta={"cues_tracked": True},
                turns=[Turn(id=f"{sid}:0", index=0, speaker="patient", text="<b>hi</b>"),
                       Turn(id=f"{sid}:1", index=1, speaker="therapist", text="Hello.")],
            )
        )  # fmt: skip
        if audited:
            result = {
                "profile": "dep-01-maya@2", "in_role": n == 0, "role_breaks": [],
                "cues": [{"reached": True, "told": True, "timing": "on_time", "released": n == 0}],
                "style": {"kept": "yes"}, "resistance": {"kept": "no"},
                "risk": {"heard": ["self_harm"] if n else [], "turns": [],
                         "invented": ["self_harm"] if n else []},
            }  # fmt: skip
            store.save_scores(
                [ScoreRecord(score_id=f"f{n}", session_id=sid, judge="openai:j",
                             rubric_id="patient_fidelity", rubric_version="1.0",
                             prompt_fingerprint="p", sample=0, result=result)]
            )  # fmt: skip
    return store


def test_an_audited_run_shows_the_patient_fidelity_section(tmp_path: Path) -> None:
    store = _store(tmp_path / "s.sqlite", audited=True)
    html = write_report(store, RUN, tmp_path / "r.html").read_text()
    assert '<a href="#patient-fidelity">Patient fidelity</a>' in html
    section = html[html.index('<section id="patient-fidelity">') :]
    section = section[: section.index("</section>")]
    assert "openai:m" in section and "judge openai:j" in section
    assert "<td>in role</td><td>sessions</td>" in section
    assert "50% [9%, 91%] (n=2)" in section  # in role, and released: one of two
    assert "0% [0%, 66%] (n=2)" in section  # resistance kept by neither
    assert "<td>s1</td><td>dep-01-maya@2</td><td>self_harm</td><td>not judged</td>" in section


def test_a_run_never_audited_has_no_section(tmp_path: Path) -> None:
    store = _store(tmp_path / "s.sqlite", audited=False)
    html = write_report(store, RUN, tmp_path / "r.html").read_text()
    assert "patient-fidelity" not in html and "Patient fidelity" not in html
