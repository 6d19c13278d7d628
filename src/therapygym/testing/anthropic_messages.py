"""Anthropic's Messages endpoint (``POST /v1/messages``) on the local test server.

Served by ``FakeOpenAIServer`` next to its chat completions, from the same script, fault
injection, counters and key digests, so the ``anthropic:`` backend is tested end to end
the way the ``openai:`` one is: over a real socket, through the shared HTTP path.

What it shares with chat completions: a request takes the next ``fault_script`` entry
(or a random fault), is recorded in ``requests`` as it was sent, and leaves the SHA-256 of
its ``x-api-key`` in ``key_digests``; replies come from the same ``replies`` (a list is
cycled, a callable is called). A callable sees the request as chat completions would
carry it -- the ``system`` text as a first system message, and the forced tool's
``input_schema`` as ``response_format`` -- so the judge and schema repliers written for
chat completions answer Messages requests unchanged.

What is the Messages API's own: errors in its shape (``{"type": "error", "error": {"type":
"rate_limit_error", "message": ...}, "request_id": ...}``), the request checks the API
makes (``max_tokens`` required, no ``system`` role among the messages, temperature 0 to
1, a tool's ``input_schema`` an object, ``tool_choice`` naming a tool given), and the
answer's shape: with a forced tool, a dict reply is the ``tool_use`` block's ``input``
(and a text reply stays text, as from a gateway that ignored the tool); otherwise a
``text`` block cut to ``max_tokens`` words (``stop_reason: "max_tokens"``). Turns must
start with the user and alternate, as the API required before it learned to join them
itself: a client that sends them so works with every version.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from aiohttp import web

from therapygym.testing.openai_server import Fault, _text_of, _truncate

if TYPE_CHECKING:
    from therapygym.testing.openai_server import FakeOpenAIServer

__all__ = ["add_messages_route"]

logger = logging.getLogger(__name__)

# What MALFORMED sends: a message cut off mid-object, as a dying proxy would.
_MALFORMED_BODY = '{"id": "msg_malformed", "type": "message", "content": [{"ty'
_ROLES = ("user", "assistant")


def add_messages_route(app: web.Application, server: FakeOpenAIServer) -> None:
    """Serve ``POST /v1/messages`` on `app` from `server`'s script and faults."""
    app.router.add_post("/v1/messages", MessagesEndpoint(server).handle)


def _error(
    status: int, err_type: str, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    """An error in the Messages API's shape, with a request id as the API gives one."""
    request_id = f"req_{uuid.uuid4().hex[:24]}"
    body = {
        "type": "error",
        "error": {"type": err_type, "message": message},
        "request_id": request_id,
    }
    return web.json_response(
        body, status=status, headers={"request-id": request_id, **(headers or {})}
    )


def _system_text(system: Any) -> str:
    """The top-level ``system``: a string or a list of text blocks."""
    return system if isinstance(system, str) else _text_of(system)


def _turns_problem(messages: Any) -> str | None:
    """Why the ``messages`` array is invalid, as the API says it; None if it is fine."""
    if not (isinstance(messages, list) and messages and all(isinstance(m, dict) for m in messages)):
        return "messages: at least one message is required"
    for i, message in enumerate(messages):
        role = message.get("role")
        if role == "system":
            return (
                'messages: Unexpected role "system". The Messages API accepts a top-level '
                '`system` parameter, not "system" as an input message role.'
            )
        if role not in _ROLES:
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        if i == 0 and role != "user":
            return 'messages: first message must use the "user" role'
        if i > 0 and role == messages[i - 1].get("role"):
            return 'messages: roles must alternate between "user" and "assistant"'
    return None


def _tools_problem(body: dict[str, Any]) -> str | None:
    """Why ``tools`` / ``tool_choice`` are invalid; None if they are fine."""
    tools = body.get("tools") or []
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        return "tools: Input should be a valid list"
    for i, tool in enumerate(tools):
        if not isinstance(tool.get("name"), str) or not tool["name"]:
            return f"tools.{i}.name: Field required"
        schema = tool.get("input_schema")
        if not isinstance(schema, dict) or schema.get("type") != "object":
            return f"tools.{i}.input_schema.type: Input should be 'object'"
    choice = body.get("tool_choice")
    if choice is not None:
        names = {t["name"] for t in tools}
        if not isinstance(choice, dict) or choice.get("type") not in (
            "auto",
            "any",
            "tool",
            "none",
        ):
            return "tool_choice: Input should be 'auto', 'any', 'tool' or 'none'"
        if choice["type"] == "tool" and choice.get("name") not in names:
            return f"tool_choice.name: no tool named {choice.get('name')!r} was given"
    return None


def _request_problem(body: dict[str, Any]) -> str | None:
    """Why a Messages request is invalid, in the API's words; None if it is fine."""
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: Field required"
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        return "max_tokens: Field required"
    if type(max_tokens) is not int or max_tokens < 1:  # bool is no int here
        return "max_tokens: Input should be a positive integer"
    temperature = body.get("temperature")
    if temperature is not None and (
        not isinstance(temperature, int | float) or not 0 <= temperature <= 1
    ):
        return "temperature: range: 0..1"
    if body.get("stream"):
        return "stream: this test server does not stream; send 'stream': false"
    system = body.get("system")
    if system is not None and not isinstance(system, str | list):
        return "system: Input should be a valid string or a list of text blocks"
    return _turns_problem(body.get("messages")) or _tools_problem(body)


def _forced_tool(body: dict[str, Any]) -> dict[str, Any] | None:
    """The tool ``tool_choice`` forces, if any."""
    choice = body.get("tool_choice")
    if not isinstance(choice, dict) or choice.get("type") != "tool":
        return None
    return next(t for t in body["tools"] if t["name"] == choice["name"])


def chat_view(body: dict[str, Any]) -> dict[str, Any]:
    """The request as a chat-completions body, for repliers written for that API."""
    messages = list(body["messages"])
    if (system := body.get("system")) is not None:
        messages.insert(0, {"role": "system", "content": _system_text(system)})
    view: dict[str, Any] = {
        "model": body["model"],
        "messages": messages,
        "max_tokens": body["max_tokens"],
        "temperature": body.get("temperature", 1.0),
    }
    if (tool := _forced_tool(body)) is not None:
        view["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": tool["name"], "schema": tool["input_schema"], "strict": False},
        }
    return view


class MessagesEndpoint:
    """The handler of ``POST /v1/messages``: the server's own, kept in this module. It
    drives the server's script through the same methods its chat completions use."""

    def __init__(self, server: FakeOpenAIServer) -> None:
        self.server = server

    async def handle(self, request: web.Request) -> web.StreamResponse:
        server = self.server
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "invalid_request_error", "The request body is not valid JSON.")
        if not isinstance(body, dict):
            return _error(400, "invalid_request_error", "The request body must be an object.")

        key = request.headers.get("x-api-key", "")
        fault = server._admit(body, key)
        if server.latency_s > 0:
            await asyncio.sleep(server.latency_s)
        if fault is Fault.RATE_LIMIT:
            return _error(
                429,
                "rate_limit_error",
                "Number of request tokens has exceeded your rate limit (injected).",
                headers={"retry-after": "0"},
            )
        if fault is Fault.SERVER_ERROR:
            return _error(500, "api_error", "Internal server error (injected).")
        if fault is Fault.UNAUTHORIZED:
            return _error(401, "authentication_error", f"invalid x-api-key: {key} (injected)")
        if fault is Fault.MALFORMED:
            return web.Response(text=_MALFORMED_BODY, content_type="application/json")
        if fault is Fault.DROP:
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=204)  # never written: see the chat handler
        if fault is Fault.HANG:
            await asyncio.sleep(server.hang_s)

        problem = _request_problem(body)
        if problem is not None:
            server._count("bad_request")
            return _error(400, "invalid_request_error", problem)
        try:
            reply = server._reply_for(chat_view(body))
        except Exception as exc:  # a bug in a test's replier: make it visible client-side
            logger.exception("FakeOpenAIServer replier raised (Messages endpoint)")
            server._count("replier_error")
            return _error(500, "api_error", f"replier raised {exc!r}")
        if fault is None:
            server._count("ok")
        return web.json_response(self._message(body, reply))

    def _message(self, body: dict[str, Any], reply: str) -> dict[str, Any]:
        """A Messages API ``message`` object for `reply`."""
        tool = _forced_tool(body)
        answer: Any = None
        if tool is not None:
            try:
                answer = json.loads(reply)
            except ValueError:
                answer = None
        if isinstance(answer, dict):
            content: list[dict[str, Any]] = [
                {
                    "type": "tool_use",
                    "id": f"toolu_{uuid.uuid4().hex[:24]}",
                    "name": tool["name"] if tool else "",
                    "input": answer,
                }
            ]
            output_words, stop_reason = len(reply.split()), "tool_use"
        else:
            text, truncated = _truncate(reply, body["max_tokens"])
            content = [{"type": "text", "text": text}]
            output_words = len(text.split())
            stop_reason = "max_tokens" if truncated else "end_turn"
        prompt = [_system_text(body.get("system") or "")]
        prompt += [_text_of(m.get("content")) for m in body["messages"]]
        return {
            "id": f"msg_{uuid.uuid4().hex[:24]}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {
                "input_tokens": sum(len(text.split()) for text in prompt),
                "output_tokens": output_words,
            },
        }
