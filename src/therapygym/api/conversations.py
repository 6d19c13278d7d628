"""Conversations held elsewhere, as the transcripts `judge()` stores and judges.

A conversation is a `Transcript`, a chat-format mapping as chat logs and fine-tuning sets
hold them (`{"messages": [{"role": "user" | "assistant" | "system", "content": ...}]}`,
with optional `id`, `therapist`, `profile_id` and `metadata`), or the bare list of
messages. Mappings are read by `runs import`'s own reader (`report.import_formats.
chat_transcript`): one role is the therapist (`assistant` unless said otherwise), the
other the patient, and system messages before the first turn are kept as the session's
system prompt (`meta["system_prompt"]`), never judged as a turn. Every problem names the
conversation by its index and the field, before anything is stored.

Each conversation gets an id derived from its run and its place in the list, so judging
the same list again resumes instead of storing it twice, and ids from elsewhere ("1" in
every file) never collide in the store.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from therapygym.errors import TherapygymError
from therapygym.records import Transcript, session_id_for, short_fingerprint
from therapygym.report.import_formats import RoleMap, TranscriptFileError, chat_transcript

ChatRole = Literal["assistant", "user"]
Conversation = Transcript | Mapping[str, Any] | Sequence[Mapping[str, Any]]
"""A transcript, a chat-format mapping with `messages`, or the list of messages alone."""

_NO_ID = ""  # a conversation's session id until `stored` names it, when it gave none


class ConversationError(TherapygymError):
    """A conversation given to `judge()` that is not a transcript or chat-format messages."""


def _draft(item: Conversation, index: int, therapist: str, roles: RoleMap) -> Transcript:
    """The conversation as a transcript not yet in a run (`stored` puts it in one)."""
    where = f"conversation {index}"
    if isinstance(item, Transcript):
        return item
    if isinstance(item, Mapping):
        row = dict(item)
    elif isinstance(item, Sequence) and not isinstance(item, str | bytes):
        row = {"messages": list(item)}
    else:
        raise ConversationError(
            f"{where}: expected a Transcript, a {{'messages': [...]}} mapping or a list of "
            f"messages (got {type(item).__name__})"
        )
    metadata = row.get("metadata")
    if "therapist" not in row and not (isinstance(metadata, Mapping) and "therapist" in metadata):
        row["therapist"] = therapist
    try:
        draft = chat_transcript(row, where, _NO_ID, roles)
    except TranscriptFileError as err:
        raise ConversationError(str(err)) from None
    if not any(turn.speaker == "therapist" for turn in draft.turns):
        raise ConversationError(
            f"{where}: field 'messages': no {roles.therapist} message, so no therapist turn "
            f"to judge (the therapist's role is '{roles.therapist}')"
        )
    return draft


def transcripts_of(
    conversations: Conversation | Iterable[Conversation],
    *,
    therapist: str,
    therapist_role: ChatRole,
) -> list[Transcript]:
    """Every conversation as a transcript not yet given a run (`stored` gives it one).
    A single transcript or chat-format mapping is a list of one."""
    if isinstance(conversations, Transcript | Mapping):
        conversations = [conversations]
    if isinstance(conversations, str | bytes):
        raise ConversationError(
            "conversations: expected transcripts or chat-format mappings, not a string "
            "(for a JSONL file, read it first or use `therapygym runs import`)"
        )
    other = "user" if therapist_role == "assistant" else "assistant"
    roles = RoleMap(therapist=therapist_role, patient=other)
    drafts = [_draft(c, i, therapist, roles) for i, c in enumerate(conversations)]
    if not drafts:
        raise ConversationError("conversations: the list is empty; nothing to judge")
    return drafts


def fingerprint(drafts: Sequence[Transcript]) -> str:
    """What the conversations say and who said it: equal for the same list, so a run
    named by it is resumed by judging the same list again, and refused for another."""
    return short_fingerprint(
        [
            [t.therapist, t.profile_id, [[turn.speaker, turn.text] for turn in t.turns], t.meta]
            for t in drafts
        ]
    )


def stored(drafts: Sequence[Transcript], run_id: str) -> list[Transcript]:
    """The transcripts as run `run_id` stores them: ids from the run and each one's place
    in the list (an id a transcript had elsewhere is kept in meta as `source_session_id`),
    and turn ids SESSION:INDEX as the store names them."""
    out = []
    for index, t in enumerate(drafts):
        sid = session_id_for(run_id, t.profile_id, t.therapist, index)
        meta = dict(t.meta)
        if t.session_id != _NO_ID:
            meta.setdefault("source_session_id", t.session_id)
        turns = [turn.model_copy(update={"id": f"{sid}:{turn.index}"}) for turn in t.turns]
        out.append(
            t.model_copy(
                update={
                    "session_id": sid,
                    "run_id": run_id,
                    "turns": turns,
                    "meta": meta,
                }
            )
        )
    return out
