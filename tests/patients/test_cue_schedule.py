"""Per-session cue schedules: each risk cue surfaces at a turn drawn from its window,
seeded like the session, so a policy trained on the library cannot learn when risk comes
up. The draw, the simulator's reminders, the transcript meta, the RL environment and the
demographics pairs all use the one schedule."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from therapygym.config import RunPlan
from therapygym.patients.library import load_profiles
from therapygym.patients.profile import PatientProfile
from therapygym.patients.simulator import LLMPatient
from therapygym.probes.demographics import DemographicsPlan, plan_units
from therapygym.records import SessionConfig, Turn, seed_for
from therapygym.rl.env import TherapyEnv
from therapygym.runner import run_plan
from therapygym.store import RunStore

LIBRARY = load_profiles()
BY_ID = {p.id: p for p in LIBRARY}
WITH_CUES = [p for p in LIBRARY if p.risk_cues]
SEEDS = range(200)


def _history(patient_turns: int) -> list[Turn]:
    """Patient and therapist lines before the patient's turn `patient_turns + 1`."""
    return [
        Turn(id=f"s:{i}", index=i, speaker=("patient", "therapist")[i % 2], text=f"line {i}")
        for i in range(2 * patient_turns)
    ]


def _seed_with(profile: PatientProfile, wanted: Any) -> int:
    """The first seed whose schedule for `profile` satisfies `wanted`."""
    return next(s for s in SEEDS if wanted(profile.cue_turns(s)))


def test_the_same_seed_draws_the_same_schedule(recording_model: Any) -> None:
    model = recording_model()
    for p in WITH_CUES:
        assert p.cue_turns(7) == p.cue_turns(7)
        assert LLMPatient(p, model, cue_seed=7).cue_turns == p.cue_turns(7)
    maya = BY_ID["dep-01-maya"]
    session = LLMPatient.for_session(maya, model, "run:s1")
    assert session.cue_turns == maya.cue_turns(seed_for("run:s1"))


def test_seeds_vary_the_schedule_of_every_profile_with_a_window() -> None:
    for p in WITH_CUES:
        schedules = {tuple(p.cue_turns(s)) for s in range(50)}
        assert len(schedules) > 1, p.id
    # one seed feeds every profile the same random stream, so library-wide schedules can
    # repeat now and then; most seeds still give a library of their own
    library_wide = {tuple(tuple(p.cue_turns(s)) for p in WITH_CUES) for s in range(20)}
    assert len(library_wide) >= 15


def test_every_drawn_turn_stays_in_its_window_and_in_order() -> None:
    for p in WITH_CUES:
        for s in SEEDS:
            drawn = p.cue_turns(s)
            assert drawn == sorted(drawn), (p.id, s)
            for cue, t in zip(p.risk_cues, drawn, strict=True):
                assert cue.window[0] <= t <= cue.window[1], (p.id, s, cue.kind)


def test_each_bound_of_a_window_is_drawn() -> None:
    """The whole window is used, not only its first turn (the old fixed timing)."""
    for p in WITH_CUES:
        for i, cue in enumerate(p.risk_cues):
            seen = {p.cue_turns(s)[i] for s in SEEDS}
            assert cue.window[1] in seen, (p.id, cue.kind)
            if i == 0:
                assert cue.window[0] in seen, (p.id, cue.kind)


async def test_the_reminder_carries_each_cue_at_its_drawn_turn(recording_model: Any) -> None:
    # rafael's three cues sit in overlapping windows, the first of them in [1, 2]
    rafael = BY_ID["man-01-rafael"]
    seeds = [_seed_with(rafael, lambda d: d[0] == 1), _seed_with(rafael, lambda d: d[0] == 2)]
    seeds.append(_seed_with(rafael, lambda d: d[1] == d[2]))  # two cues in one reply
    for cue_seed in seeds:
        model = recording_model("Mm.")
        patient = LLMPatient(rafael, model, cue_seed=cue_seed)
        for k in range(1, 6):
            said = await patient.respond(_history(k - 1), seed=k, config=SessionConfig())
            due = [c for c, t in zip(rafael.risk_cues, patient.cue_turns, strict=True) if t == k]
            assert said.cues == [c.kind.value for c in due]
            if k == 1 and not due:  # the authored opening line, no model call
                assert said.text == rafael.opening_line and not model.requests
                continue
            reminder = model.requests[-1]["messages"][-1]["content"]
            for c in rafael.risk_cues:
                assert (c.disclosure in reminder) == (c in due), (cue_seed, k, c.kind)


async def test_a_run_records_the_schedule_its_patient_followed(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    piotr = BY_ID["ang-02-piotr"]
    server = openai_server(["Fine.", "Whatever.", "Look.", "Right.", "Okay."])
    plan = RunPlan(
        run_id="schedule",
        therapists=("rule-based",),
        patient_model=server_spec(server),
        profiles=(f"{piotr.id}@{piotr.version}",),
        samples=2,
        session=SessionConfig(max_turns=10),
    )
    store = RunStore(tmp_path / "store.sqlite")
    await run_plan(plan, [piotr], store, cache=None)
    sessions = list(store.sessions("schedule"))
    assert len(sessions) == 2
    for t in sessions:
        drawn = piotr.cue_turns(seed_for(t.session_id))
        schedule = t.meta["cue_schedule"]
        assert schedule == [
            {"kind": c.kind.value, "turn": d} for c, d in zip(piotr.risk_cues, drawn, strict=True)
        ]
        said = [turn for turn in t.turns if turn.speaker == "patient"]
        assert len(said) == 5  # every window ends by the fifth patient turn
        for k, turn in enumerate(said, start=1):
            assert turn.cues == [e["kind"] for e in schedule if e["turn"] == k]


async def test_rl_reset_draws_the_schedule_from_its_seed(recording_model: Any) -> None:
    # gareth's first cue is drawn from [1, 2]: at 1 it opens the session, at 2 it does not
    gareth = BY_ID["psy-02-gareth"]
    at_one = _seed_with(gareth, lambda d: d[0] == 1)
    at_two = _seed_with(gareth, lambda d: d[0] == 2)
    for seed, opens_with_cue in ((at_one, True), (at_two, False)):
        env = TherapyEnv(recording_model("They're in the wall."), None)
        opening, info = await env.reset(gareth, seed)
        meta = env.transcript.meta["cue_schedule"]
        assert [e["turn"] for e in meta] == gareth.cue_turns(seed)
        assert info["turn"].cues == (["delusional_content"] if opens_with_cue else [])
        assert (opening == gareth.opening_line) != opens_with_cue
        # a replayed opening (a GRPO group's shared first line) records the same cues
        replay = TherapyEnv(recording_model("x"), None)
        _, replayed = await replay.reset(gareth, seed, opening=opening)
        assert replayed["turn"].cues == info["turn"].cues


def test_counterfactual_variants_share_one_schedule() -> None:
    base = BY_ID["dep-04-marisol"]
    plan = DemographicsPlan(
        run_id="demo",
        profiles=(f"{base.id}@{base.version}",),
        therapists=("rule-based",),
        patient_model="openai:fake",
        attributes=("gender",),
        samples=3,
    )
    units, _ = plan_units(plan, [base])
    by_sample: dict[int, list[Any]] = {}
    for u in units:
        by_sample.setdefault(u.sample, []).append(u.meta["cue_schedule"])
    assert all(len(v) > 1 for v in by_sample.values())  # the reference and its variants
    for schedules in by_sample.values():
        assert all(s == schedules[0] for s in schedules)
    assert len({str(v[0]) for v in by_sample.values()}) > 1  # samples still differ
