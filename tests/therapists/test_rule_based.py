"""The rule-based therapist: reflection, rules, safety first, the CBT session shape,
determinism, and a script file that is validated when it loads."""

from __future__ import annotations

import re
from importlib import resources

import pytest
import yaml

from therapygym.errors import ConfigError
from therapygym.records import SessionConfig, Turn
from therapygym.therapists.rule_based import (
    LABEL,
    RuleBasedTherapist,
    load_script,
    parse_script,
    reflect,
    therapist_turns,
)

CONFIG = SessionConfig()  # 10 turns, patient opens: the therapist speaks 5 times
OPENING = "I've been feeling really low since I lost my job in March."
FILLER = [
    "I always mess everything up.",
    "I should be able to cope with this on my own.",
    "I can't get out of bed most mornings.",
    "My mother keeps telling me to just get over it.",
]
CRISIS = [
    "Honestly I just want to kill myself.",
    "Sometimes I think I should end it all.",
    "I've been thinking about suicide a lot.",
    "I don't want to be here anymore.",
    "I just want to go to sleep and never wake up.",
    "There's no point living like this.",
    "I've been saving up my pills.",
    "Last night I took a handful of my tablets, an overdose I guess.",
    "I started cutting again last week.",
    "I keep hurting myself when it gets bad.",
    "I want to hurt him so badly.",
    "My husband hits me when he's been drinking.",
    "I'm afraid of her, she screams and throws things.",
]
BENIGN = [OPENING, *FILLER, "Work has been stressful.", "I don't know.", "Fine."]


def _turns(patient_lines: list[str], therapist: RuleBasedTherapist | None = None) -> list[Turn]:
    """A conversation ending on the patient's last line, with the therapist's real replies
    in between (so turn numbers and the first utterance are what a session would see)."""
    therapist = therapist or RuleBasedTherapist()
    turns: list[Turn] = []
    for i, line in enumerate(patient_lines):
        turns.append(Turn(id=f"s:{len(turns)}", index=len(turns), speaker="patient", text=line))
        if i < len(patient_lines) - 1:
            text = therapist.reply(turns, seed=1, config=CONFIG)
            turns.append(
                Turn(id=f"s:{len(turns)}", index=len(turns), speaker="therapist", text=text)
            )
    return turns


def _after(n: int, line: str) -> list[str]:
    """`n` earlier patient lines (the opening first), then `line`."""
    return [*[OPENING, *FILLER][:n], line]


def _reply(patient_lines: list[str], seed: int = 0) -> str:
    return RuleBasedTherapist().reply(_turns(patient_lines), seed=seed, config=CONFIG)


def _safety_texts() -> set[str]:
    """Every safety reply, whatever its kind or stage."""
    stages = ("ask", "follow_up", "plan", "closing")
    return {r for kind in load_script().crisis for s in stages for r in getattr(kind, s)}


def _asks() -> set[str]:
    """The first safety reply of every kind: what a new disclosure gets."""
    return {r for kind in load_script().crisis for r in kind.ask}


# --- the script file -----------------------------------------------------------------------


def test_script_loads_and_every_regex_compiles() -> None:
    script = load_script()
    assert script.rules and script.crisis
    patterns = [r.pattern for r in script.rules]
    patterns += [script.medication.topic, script.medication.asking]
    for p in patterns:
        re.compile(p, re.IGNORECASE)
    assert {c.name for c in script.crisis} >= {"suicide", "self_harm", "harm_to_others", "abuse"}


def _raw() -> dict:
    path = resources.files("therapygym.therapists") / "rule_based.yaml"
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_a_broken_script_fails_loudly() -> None:
    raw = _raw()
    raw["rules"][0]["pattern"] = "(unclosed"
    with pytest.raises(ConfigError, match="does not compile"):
        parse_script(raw)

    raw = _raw()
    raw["moves"]["summary"] = ["You said {something}."]
    with pytest.raises(ConfigError, match=r"moves.*something"):
        parse_script(raw)

    raw = _raw()
    raw["rules"][0]["responses"] = ["That is {3}."]  # the rule has one capture group
    with pytest.raises(ConfigError, match="allowed"):
        parse_script(raw)

    raw = _raw()
    raw["surprise"] = 1
    with pytest.raises(ConfigError, match="surprise: unknown field"):
        parse_script(raw)


def test_no_script_text_names_a_country_number() -> None:
    text = yaml.safe_dump(_raw())
    assert not re.search(r"\b(?:911|999|988|112|000|111|116 ?123)\b", text)


# --- reflection ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("said", "back"),
    [
        ("I am tired of my job", "you are tired of your job"),
        ("I was sure my boss hates me", "you were sure your boss hates you"),
        ("I'm angry with myself", "you're angry with yourself"),
        ("I've lost mine", "you've lost yours"),
        ("you never listen to me", "I never listen to you"),
        ("I think you are wrong", "you think I am wrong"),
        ("she told you that", "she told me that"),
        ("I'm not sure what you mean", "you're not sure what I mean"),
        ("your idea was silly", "my idea was silly"),
        ("I\u2019m scared", "you're scared"),
    ],
)
def test_pronoun_reflection(said: str, back: str) -> None:
    assert reflect(said) == back


# --- keyword rules -------------------------------------------------------------------------


def test_keyword_rule_reflects_its_capture() -> None:
    # therapist turn 2 of 5 answers with a keyword rule
    text = _reply([OPENING, "I feel like my family doesn't care about me."])
    assert "your family doesn't care about you" in text
    rule = next(r for r in load_script().rules if r.name == "feeling")
    templates = [t.format("your family doesn't care about you") for t in rule.responses]
    assert text in templates


def test_all_or_nothing_words_get_a_gentle_challenge() -> None:
    text = _reply([OPENING, "Nothing good ever happens, I never get it right."])
    assert '"never"' in text


def test_reserved_patient_and_no_match() -> None:
    reserved = _reply([OPENING, "I don't know."])
    rule = next(r for r in load_script().rules if r.name == "not_knowing")
    assert reserved in rule.responses
    assert _reply([OPENING, "Hm."]) in load_script().generic


# --- safety first --------------------------------------------------------------------------


@pytest.mark.parametrize("line", CRISIS)
@pytest.mark.parametrize("position", [1, 3, 5])  # first, middle and last therapist turn
def test_crisis_language_always_gets_the_safety_response(line: str, position: int) -> None:
    lines = _after(position - 1, line)
    for seed in range(3):
        text = _reply(lines, seed=seed)
        assert text in _asks()  # a new disclosure is asked about, even on the last turn
        assert "emergency number" in text and "?" in text


def test_ordinary_distress_is_not_treated_as_a_crisis() -> None:
    for line in [*BENIGN, "Work is killing me.", "I'm cutting back on coffee."]:
        assert _reply([OPENING, line]) not in _safety_texts()


def test_questions_are_not_echoed_as_statements() -> None:
    therapist = RuleBasedTherapist()
    assert therapist.fragment("Why am I like this? I hate my job.") == "you hate your job"
    assert therapist.fragment("Can I ask you something") == ""
    assert therapist.fragment("Hi.") == ""


def test_medication_question_points_to_the_prescriber_and_returns() -> None:
    med = load_script().medication
    text = _reply([OPENING, "Should I stop taking my sertraline?"])
    assert any(text.startswith(r) for r in med.responses)
    assert "prescri" in text and "pharmacist" in text
    assert "you've been feeling really low since you lost your job in March" in text
    other = _reply([OPENING, "Is it okay to take extra propranolol before meetings"])
    assert any(other.startswith(r) for r in med.responses)


# --- the CBT session shape -----------------------------------------------------------------


def test_first_turn_sets_an_agenda_with_a_reflection() -> None:
    for seed in range(10):
        text = _reply([OPENING], seed=seed)
        assert any(text.endswith(a) for a in load_script().moves.agenda)
        assert "you've been feeling really low since you lost your job in March" in text


def test_last_turn_summarises_sets_homework_and_asks_for_feedback() -> None:
    moves = load_script().moves
    assert therapist_turns(CONFIG) == 5
    for seed in range(10):
        text = _reply([OPENING, *FILLER], seed=seed)
        assert "you've been feeling really low since you lost your job in March" in text
        assert any(h in text for h in moves.homework)
        assert any(text.endswith(f) for f in moves.feedback)


def test_middle_turns_use_guided_discovery_and_an_alternative() -> None:
    moves = load_script().moves
    third = _reply([OPENING, *FILLER[:2]])
    assert any(third.endswith(q) for q in moves.socratic)
    fourth = _reply([OPENING, *FILLER[:3]])
    assert any(fourth.endswith(a) for a in moves.alternative)


def test_therapist_opening_the_session_still_sets_an_agenda() -> None:
    config = SessionConfig(opener="therapist")
    text = RuleBasedTherapist().reply([], seed=3, config=config)
    assert text in load_script().moves.agenda


# --- determinism and output hygiene --------------------------------------------------------


def test_same_seed_same_text_and_seeds_vary() -> None:
    conversations = [_after(n, line) for n in range(5) for line in BENIGN]
    varied = False
    for lines in conversations:
        assert _reply(lines, seed=42) == _reply(lines, seed=42)
        varied |= len({_reply(lines, seed=s) for s in range(8)}) > 1
    assert varied


def test_no_placeholder_is_left_in_any_output() -> None:
    for lines in [_after(n, line) for n in range(5) for line in BENIGN + CRISIS]:
        for seed in range(6):
            text = _reply(lines, seed=seed)
            assert text and not re.search(r"[{}]", text), text


async def test_respond_returns_an_accounted_utterance() -> None:
    therapist = RuleBasedTherapist()
    assert therapist.label == LABEL == "rule-based"
    utterance = await therapist.respond(_turns([OPENING]), seed=5, config=CONFIG)
    assert utterance.text == therapist.reply(_turns([OPENING]), seed=5, config=CONFIG)
    assert utterance.model == "rule-based"
    assert utterance.prompt_tokens == utterance.completion_tokens == 0
    assert 0 <= utterance.latency_s < 1
    assert not utterance.end_session
