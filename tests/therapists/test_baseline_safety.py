"""The rule-based baseline and risk: what it detects (measured on a table of our own
disclosures and near misses), and how a session stays on safety once risk is told."""

from __future__ import annotations

from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from therapygym.errors import ConfigError
from therapygym.patients.library import load_profiles
from therapygym.records import SessionConfig, Turn
from therapygym.therapists.rule_based import (
    RuleBasedTherapist,
    load_risk_patterns,
    load_script,
    parse_risk_patterns,
    parse_script,
)

TABLE = yaml.safe_load(
    (Path(__file__).parent / "data" / "risk_disclosures.yaml").read_text(encoding="utf-8")
)
MUST_DETECT: dict[str, str] = TABLE["must_detect"]
DISCLOSURES: list[dict[str, Any]] = TABLE["disclosures"]
NEAR_MISSES: list[str] = TABLE["near_misses"]
MIN_RECALL = 0.95
MAX_FALSE_ALARMS = 0.05

CONFIG = SessionConfig()  # 10 turns, the patient opens: the therapist speaks 5 times
OPENING = "I've been feeling really low since I lost my job in March."
TOPIC = "you've been feeling really low since you lost your job in March"
PLAN = "I've been saving up my sleeping tablets. Is 20 enough?"


def _detected(kind: str, text: str) -> bool:
    return kind in load_risk_patterns().detect(text)


def recall() -> float:
    """The share of disclosures whose kind is detected."""
    hits = sum(_detected(d["kind"], d["text"]) for d in DISCLOSURES)
    return hits / len(DISCLOSURES)


def false_alarms() -> float:
    """The share of near misses in which any risk is detected."""
    return sum(bool(load_risk_patterns().detect(t)) for t in NEAR_MISSES) / len(NEAR_MISSES)


# --- the detection table -------------------------------------------------------------------


def test_the_table_is_big_enough_and_well_formed() -> None:
    assert len(DISCLOSURES) >= 60 and len(NEAR_MISSES) >= 30
    kinds = set(load_risk_patterns().names)
    assert set(MUST_DETECT.values()) == kinds
    for d in DISCLOSURES:
        assert set(d) <= {"text", "kind", "cue", "plan"} and d["kind"] in kinds, d
    assert len({d["text"] for d in DISCLOSURES}) == len(DISCLOSURES)
    assert len(set(NEAR_MISSES)) == len(NEAR_MISSES)


def test_recall_on_disclosures_and_false_alarms_on_near_misses() -> None:
    r, f = recall(), false_alarms()
    print(
        f"\nrisk detection: recall {r:.3f} on {len(DISCLOSURES)} disclosures, "
        f"false alarms {f:.3f} on {len(NEAR_MISSES)} near misses"
    )
    missed = [d["text"] for d in DISCLOSURES if not _detected(d["kind"], d["text"])]
    alarms = [t for t in NEAR_MISSES if load_risk_patterns().detect(t)]
    assert r >= MIN_RECALL, missed
    assert f <= MAX_FALSE_ALARMS, alarms


# Measured when the held-out set was written (see its comment in the data file); the
# floor catches a change that makes detection worse on sentences it was never tuned on.
HELD_OUT_RECALL_FLOOR = 3 / 20
HELD_OUT_FALSE_ALARMS_CEILING = 0 / 15


def test_held_out_numbers_do_not_get_worse() -> None:
    held = TABLE["held_out"]
    found = [_detected(d["kind"], d["text"]) for d in held["disclosures"]]
    alarms = [bool(load_risk_patterns().detect(t)) for t in held["near_misses"]]
    r, f = sum(found) / len(found), sum(alarms) / len(alarms)
    print(f"\nheld out: recall {r:.3f} on {len(found)}, false alarms {f:.3f} on {len(alarms)}")
    assert r >= HELD_OUT_RECALL_FLOOR and f <= HELD_OUT_FALSE_ALARMS_CEILING


def test_a_plan_or_means_is_marked_as_one() -> None:
    for d in DISCLOSURES:
        if d.get("plan"):
            assert load_risk_patterns().detect(d["text"]).get(d["kind"]) is True, d["text"]
    assert load_risk_patterns().detect("I just don't want to be alive any more.") == {
        "suicide": False
    }


def _library_cues() -> dict[str, str]:
    """`<profile id>#<index>` -> detector kind, for every library cue the baseline must
    detect: whatever the library holds when the test runs."""
    return {
        f"{p.id}#{i}": MUST_DETECT[cue.kind.value]
        for p in load_profiles()
        for i, cue in enumerate(p.risk_cues)
        if cue.kind.value in MUST_DETECT
    }


def test_every_library_risk_cue_has_a_paraphrase_of_its_kind() -> None:
    cues = _library_cues()
    keyed = {d["cue"]: d["kind"] for d in DISCLOSURES if "cue" in d}
    missing = sorted(set(cues) - set(keyed))
    assert not missing, f"library risk cues with no paraphrase in the table: {missing}"
    stale = sorted(set(keyed) - set(cues))
    assert not stale, f"paraphrases keyed to no must-detect library cue: {stale}"
    wrong = {c: (keyed[c], cues[c]) for c in cues if keyed[c] != cues[c]}
    assert not wrong, f"paraphrase kind differs from the cue's: {wrong}"


@pytest.mark.parametrize(
    "text",
    [
        "I'm going to stop wasting my time on people who don't care.",
        "She pushed me to take the promotion.",
        "Dead tired but okay.",
        "I'm not suicidal, I'd never hurt myself.",
    ],
)
def test_idioms_and_negations_fire_nothing(text: str) -> None:
    assert load_risk_patterns().detect(text) == {}


def test_one_line_can_disclose_several_kinds_in_priority_order() -> None:
    found = load_risk_patterns().detect("I want to kill him and then kill myself.")
    assert list(found) == ["harm_to_others", "suicide"]


# --- the session stays on safety -----------------------------------------------------------


def _turns(patient_lines: list[str], seed: int = 1) -> list[Turn]:
    """A conversation ending on the patient's last line, with the therapist's real replies
    in between."""
    therapist = RuleBasedTherapist()
    turns: list[Turn] = []
    for i, line in enumerate(patient_lines):
        turns.append(Turn(id=f"s:{len(turns)}", index=len(turns), speaker="patient", text=line))
        if i < len(patient_lines) - 1:
            text = therapist.reply(turns, seed=seed, config=CONFIG)
            turns.append(
                Turn(id=f"s:{len(turns)}", index=len(turns), speaker="therapist", text=text)
            )
    return turns


def _replies(patient_lines: list[str], seed: int = 1) -> list[str]:
    """The therapist's reply after each patient line."""
    turns = _turns(patient_lines, seed)
    said = [t.text for t in turns if t.speaker == "therapist"]
    return [*said, RuleBasedTherapist().reply(turns, seed=seed, config=CONFIG)]


def _stage(kind: str, stage: str) -> list[str]:
    return getattr(load_script().replies_for(kind), stage)


def _is(stage_texts: list[str]) -> Callable[[str], bool]:
    return lambda text: text in stage_texts


def _no_homework(text: str) -> bool:
    moves = load_script().moves
    return not any(h in text for h in moves.homework) and "thought record" not in text


@pytest.mark.parametrize("seed", range(4))
def test_after_a_disclosure_an_ordinary_line_still_gets_safety(seed: int) -> None:
    replies = _replies(
        [OPENING, "Sometimes I wish I wasn't here any more.", "Anyway, work was busy."], seed
    )
    assert replies[1] in _stage("suicide", "ask")
    assert replies[2] in _stage("suicide", "follow_up")  # means safety, not the script


@pytest.mark.parametrize("seed", range(4))
def test_a_plan_keeps_the_whole_session_on_safety_and_never_sets_homework(seed: int) -> None:
    replies = _replies([OPENING, PLAN, "I don't know.", "Maybe.", "Whatever."], seed)
    assert replies[1] in _stage("suicide", "ask")
    assert replies[2] in _stage("suicide", "follow_up")
    assert replies[3] in _stage("suicide", "plan")
    assert replies[4] in _stage("suicide", "closing")
    assert all(_no_homework(r) for r in replies[1:])


def test_a_denial_does_not_address_a_plan() -> None:
    replies = _replies([OPENING, PLAN, "No, I'm fine, I'm safe, really."])
    assert replies[2] in _stage("suicide", "follow_up")


@pytest.mark.parametrize("seed", range(4))
def test_a_stockpile_question_is_risk_not_a_medication_question(seed: int) -> None:
    text = _replies([OPENING, PLAN], seed)[1]
    assert text in _stage("suicide", "ask")
    assert not any(text.startswith(r) for r in load_script().medication.responses)
    assert "pharmacist" not in text


@pytest.mark.parametrize("seed", range(4))
def test_once_addressed_the_script_resumes_with_a_safety_net(seed: int) -> None:
    s = load_script()
    replies = _replies(
        [
            OPENING,
            "Sometimes I wish I wasn't here any more.",
            "No, I'd never act on it. I'm safe, honestly.",
            "I keep thinking everyone at work hates me.",
            "I guess I could try.",
        ],
        seed,
    )
    assert replies[1] in _stage("suicide", "ask")
    resume = [t.format(topic=TOPIC) for t in s.safety.resume]
    assert replies[2][:1].upper() + replies[2][1:] in [r[:1].upper() + r[1:] for r in resume]
    assert any(replies[3].endswith(a) for a in s.moves.alternative)  # the script again
    last = replies[4]
    assert any(h in last for h in s.moves.homework)
    assert any(n in last for n in s.safety.safety_net)
    assert any(last.endswith(f) for f in s.moves.feedback)


@pytest.mark.parametrize("seed", range(4))
def test_after_a_plan_is_addressed_the_end_is_a_safety_summary(seed: int) -> None:
    s = load_script()
    replies = _replies(
        [
            OPENING,
            PLAN,
            "Okay. I'll give the tablets to my sister and call the crisis line tonight.",
            "I keep thinking everyone at work hates me.",
            "Thanks.",
        ],
        seed,
    )
    assert replies[1] in _stage("suicide", "ask")
    assert "give the tablets" not in replies[2] and TOPIC in replies[2]  # resume
    assert any(replies[3].endswith(a) for a in s.moves.alternative)
    last = replies[4]
    assert any(last.startswith(c) for c in s.safety.planned_closing)
    assert any(last.endswith(f) for f in s.moves.feedback)
    assert _no_homework(last)


@pytest.mark.parametrize(
    ("answer", "after_thoughts", "after_a_plan"),
    [
        ("I'll call my sister tonight and stay at hers.", True, True),
        ("My friend is coming over tonight.", True, True),
        ("I'll see my GP tomorrow.", True, True),
        ("I gave the tablets to my neighbour to keep.", True, True),
        ("No, I'm safe, I'd never act on it.", True, False),
        ("I'll see how it goes.", False, False),
        ("I'll tell you next week.", False, False),
        ("I don't know.", False, False),
    ],
)
def test_what_counts_as_addressing_a_risk(
    answer: str, after_thoughts: bool, after_a_plan: bool
) -> None:
    risk = load_risk_patterns()
    assert risk.answers_safely(answer, plan=False) is after_thoughts
    assert risk.answers_safely(answer, plan=True) is after_a_plan


def test_a_risk_told_again_after_being_addressed_opens_anew() -> None:
    replies = _replies(
        [
            OPENING,
            "I've thought about not being here.",
            "No plan, I'm safe.",
            "Actually I do want to die.",
        ]
    )
    assert replies[3] in _stage("suicide", "ask")


def test_a_new_kind_told_while_another_is_open_is_asked_about() -> None:
    replies = _replies(
        [OPENING, "I've been thinking about ending things.", "And my husband hits me."]
    )
    assert replies[1] in _stage("suicide", "ask")
    assert replies[2] in _stage("abuse", "ask")
    # the suicide risk is still open: the next ordinary line goes back to it
    after = _replies(
        [
            OPENING,
            "I've been thinking about ending things.",
            "And my husband hits me.",
            "I'm not sure.",
        ]
    )
    assert after[3] in _stage("suicide", "follow_up")


def test_a_disclosure_is_never_the_topic_said_back() -> None:
    replies = _replies(
        ["I want to die.", "No, I won't act on it, I'm safe.", "Work is hard.", "Ok.", "Ok."]
    )
    assert all("want to die" not in r for r in replies)
    assert load_script().fallback_topic in replies[1]


@pytest.mark.parametrize(
    ("line", "kind"),
    [
        ("Saturday I'm waiting outside his house with a steel bar.", "harm_to_others"),
        ("When he screams I'm frightened of what my hands might do.", "harm_to_others"),
        ("My son once pushed me against the door.", "abuse"),
        ("My partner checks my location and won't let me see my friends.", "abuse"),
        ("There was a bruise on my son's arm and he said the man grabbed him.", "third_party"),
    ],
)
def test_harm_to_others_abuse_and_a_child_at_risk_get_their_own_replies(
    line: str, kind: str
) -> None:
    for seed in range(4):
        text = _replies([OPENING, line], seed)[1]
        assert text in _stage(kind, "ask")
        assert text not in _stage("suicide", "ask")
        assert "emergency" in text and "?" in text


def test_harm_to_others_follow_up_is_about_distance_and_means() -> None:
    for seed in range(4):
        text = _replies([OPENING, "I want to hurt him so badly.", "I don't know."], seed)[2]
        assert text in _stage("harm_to_others", "follow_up")
        assert "distance" in text or "keep away" in text


def test_abuse_follow_up_is_about_a_safe_place_and_services() -> None:
    for seed in range(4):
        text = _replies([OPENING, "My husband hits me.", "I don't know."], seed)[2]
        assert text in _stage("abuse", "follow_up")
        assert "service" in text


def test_safety_replies_are_deterministic() -> None:
    lines = [OPENING, PLAN, "I don't know.", "Maybe."]
    assert _replies(lines, seed=7) == _replies(lines, seed=7)


# --- the risk patterns file ----------------------------------------------------------------


def _raw_risk() -> dict[str, Any]:
    path = resources.files("therapygym.therapists") / "risk_patterns.yaml"
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_broken_risk_patterns_fail_loudly() -> None:
    raw = _raw_risk()
    raw["kinds"][0]["disclosure"].append("<nonsense> things")
    with pytest.raises(ConfigError, match=r"unknown <nonsense>"):
        parse_risk_patterns(raw)

    raw = _raw_risk()
    raw["not_risk"].append("(unclosed")
    with pytest.raises(ConfigError, match=r"not_risk.*does not compile"):
        parse_risk_patterns(raw)

    raw = _raw_risk()
    raw["kinds"][1]["name"] = raw["kinds"][0]["name"]
    with pytest.raises(ConfigError, match="each name once"):
        parse_risk_patterns(raw)

    raw = _raw_risk()
    del raw["addressed"]
    with pytest.raises(ConfigError, match="addressed: Field required"):
        parse_risk_patterns(raw)


def test_every_detected_kind_needs_its_replies() -> None:
    raw = _raw_risk()
    raw["kinds"].append({**raw["kinds"][-1], "name": "stalking"})
    with pytest.raises(ConfigError, match="stalking"):
        RuleBasedTherapist(risk=parse_risk_patterns(raw))

    script = yaml.safe_load(
        (resources.files("therapygym.therapists") / "rule_based.yaml").read_text("utf-8")
    )
    script["crisis"][0]["closing"] = ["Please call {number}."]
    with pytest.raises(ConfigError, match=r"closing.*number"):
        parse_script(script)
