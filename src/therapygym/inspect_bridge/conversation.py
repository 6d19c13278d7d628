"""A therapygym transcript as Inspect chat messages, so `inspect view` shows the
conversation: the therapist is the assistant (the model under evaluation), the patient
the user, each message carrying its turn id (the id judges cite as evidence)."""

from __future__ import annotations

from inspect_ai.model import ChatMessage, ChatMessageAssistant, ChatMessageSystem, ChatMessageUser

from therapygym.records import Transcript


def transcript_messages(transcript: Transcript, system: str | None = None) -> list[ChatMessage]:
    """The session as the therapist saw it, its system prompt first when known."""
    messages: list[ChatMessage] = []
    if system:
        messages.append(ChatMessageSystem(content=system))
    for turn in transcript.turns:
        if turn.speaker == "therapist":
            messages.append(
                ChatMessageAssistant(
                    id=turn.id, content=turn.text, model=turn.model, metadata={"turn": turn.id}
                )
            )
        else:
            meta = {"turn": turn.id, **({"risk_cues": turn.cues} if turn.cues else {})}
            messages.append(ChatMessageUser(id=turn.id, content=turn.text, metadata=meta))
    return messages
