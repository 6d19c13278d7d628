"""Turn awareness: the prompted therapist is told its reply number and the session's length
(turn notes, on with our prompt), prompt files opt in through template variables, and
`no-turn-info` sends exactly what was sent before. TheraAgent's rewrite sees what its draft
saw; a run whose prompt setting changed is not resumed."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from judges.scripted import instance

from therapygym.config import RunPlan
from therapygym.errors import ConfigError
from therapygym.patients.library import load_profiles
from therapygym.patients.simulator import ScriptedPatient
from therapygym.records import SessionConfig, Turn
from therapygym.runner import run_plan
from therapygym.session import Session
from therapygym.store import RunStore, StoreError
from therapygym.therapists import load_therapist
from therapygym.therapists.prompted import (
    NO_TURN_INFO,
    PromptedTherapist,
    default_prompt,
    read_prompt,
    resolve_prompt,
)
from therapygym.therapists.theraagent import TheraAgent

# sha256 of `prompts/cbt_default.md` before turn notes existed
BEFORE_TURN_NOTES = "c0ff5b312843d01c2617ce349f1d4c798f631d563d7bdd4f6779b2025b477008"
NOTE = "[Session note; the client does not see it: this is your"


def note(turn: int, of: int) -> str:
    where = f"last reply ({turn} of {of})" if turn == of else f"reply {turn} of {of}"
    return f"{NOTE} {where}.]"


async def session_requests(
    recording_model: Any, prompt: Any, **config: Any
) -> tuple[list[list[dict[str, str]]], Any]:
    """The requests a prompted therapist sends over a whole session with a scripted patient."""
    therapist = PromptedTherapist(recording_model("Go on."), prompt)
    session = Session(
        session_id="s",
        patient=ScriptedPatient([f"patient {i}" for i in range(5)]),
        therapist=therapist,
        profile_id="p",
        config=SessionConfig(**config),
    )
    transcript = await session.run()
    return [r["messages"] for r in therapist.model.requests], transcript


def test_no_turn_info_is_the_prompt_as_it_was_before_turn_notes() -> None:
    plain = read_prompt(NO_TURN_INFO)
    assert hashlib.sha256(plain.text.encode()).hexdigest() == BEFORE_TURN_NOTES
    assert not plain.turn_aware and plain.system(SessionConfig(max_turns=4)) == plain.text
    ours = resolve_prompt(None)
    assert ours is not None and ours.turn_aware and ours.text == default_prompt()
    assert "session note" in default_prompt() and "about five exchanges" not in default_prompt()


async def test_our_prompt_tells_each_reply_its_number_and_only_appends(
    recording_model: Any,
) -> None:
    requests, transcript = await session_requests(
        recording_model, resolve_prompt(None), max_turns=6
    )
    assert len(requests) == 3
    for k, request in enumerate(requests, start=1):
        assert request[0] == {"role": "system", "content": default_prompt()}
        assert request[-1] == {"role": "user", "content": f"patient {k - 1}\n\n{note(k, 3)}"}
        if k > 1:  # what the therapist saw before is kept as it was: the request only grows
            assert request[: len(requests[k - 2])] == requests[k - 2]
    # the notes are the therapist's view only: the transcript holds what was said
    assert [t.text for t in transcript.turns if t.speaker == "patient"] == [
        "patient 0",
        "patient 1",
        "patient 2",
    ]


async def test_a_therapist_that_opens_gets_its_note_alone(recording_model: Any) -> None:
    requests, _ = await session_requests(
        recording_model, resolve_prompt(None), max_turns=3, opener="therapist"
    )
    assert [r[1:] for r in requests[:1]] == [[{"role": "user", "content": note(1, 2)}]]
    assert requests[1][1:] == [
        {"role": "user", "content": note(1, 2)},
        {"role": "assistant", "content": "Go on."},
        {"role": "user", "content": f"patient 0\n\n{note(2, 2)}"},
    ]


async def test_a_prompt_file_without_variables_is_sent_as_before(
    tmp_path: Path, recording_model: Any
) -> None:
    path = tmp_path / "mine.md"
    path.write_text("Be brief. {curly} braces {# and a comment #} stay.\n")
    prompt = read_prompt(path)
    assert not prompt.turn_aware
    requests, _ = await session_requests(recording_model, prompt, max_turns=4)
    assert requests[1] == [
        {"role": "system", "content": "Be brief. {curly} braces {# and a comment #} stay."},
        {"role": "user", "content": "patient 0"},
        {"role": "assistant", "content": "Go on."},
        {"role": "user", "content": "patient 1"},
    ]


async def test_a_prompt_file_with_variables_is_rendered_and_gets_notes(
    tmp_path: Path, recording_model: Any
) -> None:
    path = tmp_path / "paced.md"
    path.write_text("You have {{ therapist_turns }} replies in {{ max_turns }} turns.")
    prompt = read_prompt(path)
    assert prompt.turn_aware
    requests, _ = await session_requests(recording_model, prompt, max_turns=4)
    assert requests[0] == [
        {"role": "system", "content": "You have 2 replies in 4 turns."},
        {"role": "user", "content": f"patient 0\n\n{note(1, 2)}"},
    ]
    therapist, _ = load_therapist("python:json:dumps", prompt=str(path))
    assert therapist.label.startswith("python:json:dumps#prompt-")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Reply {{ turn }} of {{ therapist_turns }}.", r"unknown variable\(s\) turn .*a note"),
        ("{{ session_length }} replies.", r"unknown variable\(s\) session_length \(a prompt"),
        ("You have {{ therapist_turns } replies.", r"line 1: "),
        ("{{ therapist_turns.hours }} replies.", r"therapist prompt file .*hours"),
    ],
)
def test_a_broken_prompt_template_is_one_line_naming_the_file(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "broken.md"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        read_prompt(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_no_system_prompt_means_no_notes() -> None:
    assert resolve_prompt("none") is None
    therapist, _ = load_therapist("python:json:dumps", prompt="none")
    turns = [Turn(id="s:0", index=0, speaker="patient", text="hi")]
    assert therapist.messages(turns, SessionConfig()) == [{"role": "user", "content": "hi"}]


def _theraagent_replier(body: dict[str, Any]) -> Any:
    """Judge: the draft scores 2 everywhere, the rewrite 5; critic and coach valid;
    the therapist drafts DRAFT and rewrites to WARMER."""
    fmt = body.get("response_format")
    if fmt is None:
        supervised = body["messages"][-1]["content"].startswith("[A note from your clinical")
        return "WARMER" if supervised else "DRAFT"
    schema = fmt["json_schema"]["schema"]
    if schema["title"] == "Coaching":
        return {"instructions": ["Name the feeling first."]}
    if schema["title"] == "Critique":
        prop = schema["$defs"]["Weakness"]["properties"]["dimension"]
        named = (prop.get("enum") or [prop["const"]])[0]
        return {"weaknesses": [{"dimension": named, "evidence": "DRAFT", "problem": "Flat."}]}
    score = 5 if "WARMER" in body["messages"][-1]["content"] else 2
    return instance(schema, schema, score, "no")


async def test_theraagent_rewrites_with_the_notes_its_draft_saw(
    openai_server: Any, server_spec: Any
) -> None:
    server = openai_server(_theraagent_replier)
    agent, owned = load_therapist(f"theraagent[rounds=1]:{server_spec(server)}")
    assert isinstance(agent, TheraAgent)
    turns = [
        Turn(id="s:0", index=0, speaker="patient", text="I feel flat."),
        Turn(id="s:1", index=1, speaker="therapist", text="Flat how?"),
        Turn(id="s:2", index=2, speaker="patient", text="Like nothing matters."),
    ]
    try:
        reply = await agent.respond(turns, seed=1, config=SessionConfig(max_turns=4))
    finally:
        for model in owned:
            await model.aclose()
    assert reply.text == "WARMER"
    therapist = [b["messages"] for b in server.requests if not b.get("response_format")]
    draft, rewrite = therapist
    assert draft[-1]["content"] == f"Like nothing matters.\n\n{note(2, 2)}"
    assert rewrite[: len(draft)] == draft  # the same request, then the draft as its reply
    assert rewrite[len(draft)] == {"role": "assistant", "content": "DRAFT"}


def _role_replier(body: dict[str, Any]) -> str:
    system = body["messages"][0]["content"] if body["messages"][0]["role"] == "system" else ""
    return "patient line" if "role-playing a person" in system else "therapist line"


async def test_a_run_resumed_with_turn_info_switched_off_is_refused(
    tmp_path: Path, openai_server: Any, server_spec: Any
) -> None:
    spec = server_spec(openai_server(_role_replier))
    profile = load_profiles()[0]
    store = RunStore(tmp_path / "store.sqlite")

    def plan(prompt: str | None) -> RunPlan:
        return RunPlan(
            run_id="turns",
            therapists=(spec,),
            therapist_prompt=prompt,
            patient_model=spec,
            profiles=(f"{profile.id}@{profile.version}",),
            session=SessionConfig(max_turns=2),
        )

    await run_plan(plan(None), [profile], store, cache=None)
    with pytest.raises(StoreError, match="therapist_prompt"):
        await run_plan(plan(NO_TURN_INFO), [profile], store, cache=None)
    (session,) = store.sessions("turns")
    assert session.turns[0].text == profile.opening_line  # stored without its note
