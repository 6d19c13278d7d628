"""How a transcript is shown to a judge: delimited data, anonymous, with short turn labels.

The transcript goes inside <transcript> tags as a JSON array, with `<`, `>` and `&` escaped,
so nothing a patient or therapist says can close the block or pose as instructions; the
judge prompt says the block is data. Only speaker roles and text are shown: never the
therapist's model name or any other metadata. Turns are labelled T1..Tn for evidence, and
mapped back to stable turn ids afterwards.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from therapygym.records import Transcript, Turn

_SPEAKER = {"patient": "client", "therapist": "therapist"}


@dataclass(frozen=True)
class RenderedTranscript:
    text: str
    labels: dict[str, str]  # "T3" -> turn id
    therapist_labels: tuple[str, ...]
    patient_labels: tuple[str, ...] = ()  # where a judge cites the client's cues

    def turn_ids(self, labels: list[str]) -> list[str]:
        """Stable turn ids for cited labels, each once, in the order cited."""
        return [self.labels[label] for label in dict.fromkeys(labels) if label in self.labels]


def _safe_json(value: object) -> str:
    text = json.dumps(value, ensure_ascii=False, indent=1)
    return text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")


def render_turns(turns: list[Turn]) -> RenderedTranscript:
    labels = {f"T{i + 1}": t.id for i, t in enumerate(turns)}
    rows = [
        {"turn": f"T{i + 1}", "speaker": _SPEAKER[t.speaker], "text": t.text}
        for i, t in enumerate(turns)
    ]
    therapist = tuple(f"T{i + 1}" for i, t in enumerate(turns) if t.speaker == "therapist")
    patient = tuple(f"T{i + 1}" for i, t in enumerate(turns) if t.speaker == "patient")
    return RenderedTranscript(
        text=f"<transcript>\n{_safe_json(rows)}\n</transcript>",
        labels=labels,
        therapist_labels=therapist,
        patient_labels=patient,
    )


def render_transcript(transcript: Transcript) -> RenderedTranscript:
    return render_turns(transcript.turns)
