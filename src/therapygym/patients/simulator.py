"""Simulated patients: an LLM playing a profile, a scripted patient, and a replay patient.

The LLM patient gets the profile as a system prompt (templates in `prompts/`, style
wording in `styles.yaml`) and, with every therapist line, a short role reminder that also
carries the risk cues due at that turn. When each cue is due is drawn once per session
from the cue's turn window (`PatientProfile.cue_turns`), seeded like the session, so a
policy trained on the library meets risk at varying turns and cannot learn its timing. Its
first line is the profile's authored opening line unless a cue is due at turn 1. A reply
ending with the end marker ends the session.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Self

from jinja2 import Template

from therapygym.errors import ConfigError
from therapygym.models.types import ChatModel, Completion
from therapygym.patients.profile import PatientProfile, Style
from therapygym.records import SessionConfig, Turn, as_messages, seed_for
from therapygym.session import Utterance
from therapygym.templates import prompt_env
from therapygym.yamlfile import read_yaml_mapping

END_MARKER = "[END SESSION]"
_ROLE_PREFIX = re.compile(r"^\s*(?:\*\*)?(client|patient|me|you|i)\s*(?:\*\*)?\s*:\s*", re.I)
_END = re.compile(r"\[\s*end[ _-]?session\s*\]", re.I)


@cache
def style_texts() -> dict[str, dict[str, str]]:
    """Descriptions of styles, resistance and ambivalence levels (from `styles.yaml`)."""
    path = Path(str(resources.files("therapygym.patients") / "styles.yaml"))
    return read_yaml_mapping(path, "patient styles file", ConfigError)


def _template(name: str) -> Template:
    return prompt_env().get_template(f"therapygym.patients:prompts/{name}.j2")


def _utterance(text: str, completion: Completion | None, cues: list[str]) -> Utterance:
    usage: dict[str, Any] = {}
    if completion is not None:
        usage = {
            "latency_s": completion.latency_s,
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
            "cached": completion.cached,
            "model": completion.model,
        }
    ended = bool(_END.search(text))
    clean = _END.sub("", text)
    clean = _ROLE_PREFIX.sub("", clean.strip()).strip().strip('"').strip()
    return Utterance(text=clean or ("" if ended else "..."), end_session=ended, cues=cues, **usage)


def simulated_meta(profile: PatientProfile, cue_turns: Sequence[int]) -> dict[str, Any]:
    """What every transcript an `LLMPatient` plays must carry: that the patient turns record
    the cues the simulator was told to surface (scripted cues are the safety judge's floor
    for applicability), the patient's locale (which crisis lines a fitting referral names),
    and the session's drawn cue schedule (`LLMPatient.cue_turns`).

    The schedule is stored as `cue_schedule`, one `{"kind", "turn"}` per risk cue in the
    profile's order, so a transcript says on its own when each cue was due without the
    profile file; it is not named `cue_turns` because the safety judge's verdicts already
    use that name for the turn ids where a cue was heard. Judges are not shown it."""
    return {
        "cues_tracked": True,
        "locale": profile.locale,
        "cue_schedule": [
            {"kind": c.kind.value, "turn": t}
            for c, t in zip(profile.risk_cues, cue_turns, strict=True)
        ],
    }


def simulator_prompt(
    profile: PatientProfile,
    *,
    style: Style | None = None,
    resistance: str | None = None,
    ambivalence: str | None = None,
) -> str:
    """The system prompt of an LLM patient playing `profile`, in its own style, resistance
    and ambivalence unless others are given."""
    texts = style_texts()
    return _template("simulator").render(
        p=profile,
        d=profile.demographics,
        style=texts["styles"][style or profile.style],
        resistance=texts["resistance"][resistance or profile.resistance],
        ambivalence=texts["ambivalence"][ambivalence or profile.ambivalence],
        end_marker=END_MARKER,
    )


class LLMPatient:
    """A profile played by a chat model, with its risk cues due at the turns `cue_seed`
    draws from their windows (the same seed replays the same schedule).

    `system_prompt` is `simulator_prompt` of the same profile and style, for a caller that
    plays many sessions of one profile (the runner renders it once per profile)."""

    def __init__(
        self,
        profile: PatientProfile,
        model: ChatModel,
        *,
        cue_seed: int,
        style: Style | None = None,
        resistance: str | None = None,
        ambivalence: str | None = None,
        system_prompt: str | None = None,
    ) -> None:
        self.profile = profile
        self.model = model
        self.cue_turns = profile.cue_turns(cue_seed)
        self.style = style or profile.style
        self.resistance = resistance or profile.resistance
        self.ambivalence = ambivalence or profile.ambivalence
        self.label = f"llm-patient:{model.spec}"
        if system_prompt is None:
            system_prompt = simulator_prompt(
                profile, style=self.style, resistance=self.resistance, ambivalence=self.ambivalence
            )
        self.system_prompt = system_prompt

    @classmethod
    def for_session(cls, profile: PatientProfile, model: ChatModel, session_id: str) -> Self:
        """The patient of one stored session, its cue schedule drawn from the seed a
        `Session` derives from the same id, so a rerun of the session replays it."""
        return cls(profile, model, cue_seed=seed_for(session_id))

    def messages(self, turns: list[Turn]) -> tuple[list[dict[str, str]], list[str]]:
        """The prompt for the next patient turn, and the risk cues it is asked to surface."""
        patient_turn = sum(t.speaker == "patient" for t in turns) + 1
        cues = self.profile.cues_at(patient_turn, self.cue_turns)
        reminder = _template("reminder").render(
            d=self.profile.demographics, style_name=self.style, turn=patient_turn, cues=cues
        )
        history = as_messages(turns, "patient")
        if not history or history[-1]["role"] != "user":
            opening = _template("opening").render(d=self.profile.demographics)
            history.append({"role": "user", "content": opening})
        last = history[-1]
        history[-1] = {"role": "user", "content": f"{last['content']}\n\n{reminder}"}
        return [{"role": "system", "content": self.system_prompt}, *history], [
            c.kind.value for c in cues
        ]

    async def respond(self, turns: list[Turn], *, seed: int, config: SessionConfig) -> Utterance:
        if not turns and not self.profile.cues_at(1, self.cue_turns):
            return Utterance(text=self.profile.opening_line)
        messages, cues = self.messages(turns)
        completion = await self.model.chat(
            messages, temperature=config.temperature, max_tokens=config.max_tokens, seed=seed
        )
        return _utterance(completion.text, completion, cues)


class ScriptedPatient:
    """Fixed utterances, in order; the patient leaves once the last one is answered."""

    def __init__(self, utterances: list[str], *, label: str = "scripted-patient") -> None:
        if not utterances:
            raise ValueError("a scripted patient needs at least one utterance")
        self.utterances = list(utterances)
        self.label = label

    async def respond(self, turns: list[Turn], *, seed: int, config: SessionConfig) -> Utterance:
        said = sum(t.speaker == "patient" for t in turns)
        if said >= len(self.utterances):
            return Utterance(text="", end_session=True)
        return Utterance(text=self.utterances[said])


class ReplayPatient(ScriptedPatient):
    """The patient side of an existing transcript, replayed to a new therapist."""

    def __init__(self, turns: list[Turn], *, label: str = "replay-patient") -> None:
        super().__init__([t.text for t in turns if t.speaker == "patient"], label=label)
