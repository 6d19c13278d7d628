"""Inspect's model as a therapygym `ChatModel`: messages in, a `Completion` out.

This is how the model `inspect eval --model` names sits in the therapist's seat: our
`PromptedTherapist` builds the therapist's messages (our CBT prompt and turn notes, as in
any therapygym run) and calls `chat`; the call goes through Inspect's `Model.generate`,
so Inspect's retries, rate limits, cache, usage accounting and transcript events apply
to it exactly as to any other Inspect eval. Our response cache and retry policy do not
wrap it: Inspect owns this model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from therapygym.errors import TherapygymError
from therapygym.models.types import Completion, Message

if TYPE_CHECKING:
    from inspect_ai.model import ChatMessage, Model, ModelOutput


def inspect_messages(messages: list[Message] | list[dict[str, str]]) -> list[ChatMessage]:
    """OpenAI-shaped messages as Inspect's chat messages."""
    from inspect_ai.model import ChatMessageAssistant, ChatMessageSystem, ChatMessageUser

    kinds = {
        "system": ChatMessageSystem,
        "user": ChatMessageUser,
        "assistant": ChatMessageAssistant,
    }
    return [kinds[m["role"]](content=m["content"]) for m in messages]


def _reasoning(output: ModelOutput) -> str | None:
    """A reasoning model's thinking, which Inspect keeps in content parts of its own
    (`output.completion` is the text without it): kept apart, never the reply."""
    from inspect_ai.model import ContentReasoning

    if not output.choices or isinstance(output.message.content, str):
        return None
    parts = [c.reasoning for c in output.message.content if isinstance(c, ContentReasoning)]
    return "\n\n".join(parts) or None


class InspectChatModel:
    """An Inspect `Model` behind the `ChatModel` protocol.

    `spec` is Inspect's name for the model (`openai/gpt-4o`, `mockllm/model`): the label
    transcripts carry as their therapist. Structured output is not routed through it: the
    Inspect model is evaluated as a therapist, while judges are therapygym model specs
    with our schema handling (task argument `judge`).
    """

    def __init__(self, model: Model) -> None:
        self.model = model
        self.spec = str(model)

    async def chat(
        self,
        messages: list[Message] | list[dict[str, str]],
        *,
        temperature: float = 0.0,
        max_tokens: int = 256,
        seed: int = 0,
        json_schema: dict[str, Any] | None = None,
        validate: Callable[[str], str | None] | None = None,
    ) -> Completion:
        """One `Model.generate` call with the session's sampling settings. `validate` has
        nothing to keep out of a cache here (Inspect's cache is Inspect's), so it is not
        consulted; a caller that re-asks on an unusable reply still can."""
        from inspect_ai.model import GenerateConfig

        if json_schema is not None:
            raise TherapygymError(
                f"the Inspect model {self.spec} plays the therapist only; judges are "
                "therapygym model specs (task argument judge=...)"
            )
        output = await self.model.generate(
            inspect_messages(messages),
            config=GenerateConfig(temperature=temperature, max_tokens=max_tokens, seed=seed),
        )
        usage = output.usage
        return Completion(
            reasoning=_reasoning(output),
            text=output.completion,
            prompt_tokens=usage.input_tokens if usage else 0,
            completion_tokens=usage.output_tokens if usage else 0,
            latency_s=output.time or 0.0,
            model=output.model or self.spec,
            finish_reason=output.choices[0].stop_reason if output.choices else None,
        )
