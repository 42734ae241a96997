"""`openai:MODEL`: an agent played by any OpenAI-compatible chat-completions endpoint.

The agent keeps the conversation the way the API expects it: the gym's system prompt, the task
prompt as the first user message, each assistant reply with its tool call, and the gym's answer to
that call as a ``tool`` message (``tool_call_id`` set); an observation that answers a reply
without a tool call goes back as a user message. Every request offers the one tool,
`INTERACT_TOOL`, at temperature 0 unless told otherwise.

What `arespond` returns, for `baorl.gyms.parser.parse_action`:

- the first tool call, as the OpenAI object ``{"id", "type", "function": {"name", "arguments"}}``;
  when the model also returned reasoning (``reasoning_content``, as vLLM's reasoning parsers and
  ``baorl serve`` send it), the same call as Hermes text behind a ``<think>`` block instead, since
  the parser reads the think block only from text;
- with no tool call, the reply's text (reasoning in a ``<think>`` block first), so the rollout
  records ``no_tool_call``, or plays a bracket call such as ``[answer] 42`` if the text is one.

Only the first tool call of a reply is kept in the history (it is the one the gym answers).
Lone surrogates in a reply (``"\\ud800"`` escapes) become U+FFFD in both the output and the
history, so the episode can be recorded and the next request encoded.

Transient failures (connection errors, timeouts, 408/409/429, 5xx, a reply without choices) are
retried with exponential backoff (the policy of `baorl.endpoint`, shared with the simulators); when
the retries are spent, or at once for other HTTP errors, `arespond` raises `AgentError` naming the model and endpoint (never the key), so a broken endpoint
stops the run instead of counting as episodes the agent failed.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from baorl.agents.base import Agent, AgentError
from baorl.endpoint import EndpointClient
from baorl.gyms.tool import INTERACT_TOOL
from baorl.records import clean_json

__all__ = ["OpenAIAgent", "AgentError"]


class OpenAIAgent(EndpointClient, Agent):
    """An agent backed by a chat-completions endpoint (OpenAI, vLLM, `baorl serve`, ...).

    Args:
        model: the model id the endpoint serves (the ``MODEL`` of ``openai:MODEL``).
        base_url: endpoint root such as ``http://127.0.0.1:8000/v1``; default ``OPENAI_BASE_URL``,
            else OpenAI's API.
        api_key: default ``OPENAI_API_KEY``, else ``"EMPTY"`` (local servers need none).
        temperature: sampling temperature (default 0; None leaves it to the endpoint).
        max_tokens: per-reply limit (None: the endpoint's default).
        max_retries: retries after the first attempt for transient failures.
        backoff: base delay in seconds; retry k waits ``backoff * 2**(k-1)`` plus up to 50% jitter.
        timeout: per-request timeout in seconds.
        extra_body: extra request fields, e.g. ``{"chat_template_kwargs": {"enable_thinking": False}}``.

    Example:
        >>> agent = OpenAIAgent("gpt-4o", base_url="http://localhost:8000/v1", api_key="sk-secret")
        >>> agent.name, agent
        ('openai:gpt-4o', OpenAIAgent(model='gpt-4o', base_url='http://localhost:8000/v1'))
    """

    _error = AgentError

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        temperature: float | None = 0.0,
        max_tokens: int | None = None,
        max_retries: int = 4,
        backoff: float = 0.5,
        timeout: float = 120.0,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        if not model or not model.strip():
            raise ValueError("model is empty: name the agent's model, e.g. 'openai:gpt-4o'")
        if int(max_retries) != max_retries or max_retries < 0:
            raise ValueError(f"max_retries must be an integer >= 0, got {max_retries!r}")
        if backoff < 0 or timeout <= 0:
            raise ValueError(f"backoff must be >= 0 and timeout > 0, got {backoff!r} and {timeout!r}")
        if max_tokens is not None and max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens!r}")
        self.model = model.strip()
        self.name = f"openai:{self.model}"
        self._connect(base_url, api_key, timeout=timeout, max_retries=max_retries, backoff=backoff)
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.extra_body = dict(extra_body) if extra_body else None

    @property
    def _who(self) -> str:
        return f"agent {self.name}"

    def __repr__(self) -> str:
        return f"OpenAIAgent(model={self.model!r}, base_url={self.base_url!r})"

    # ---- the episode ------------------------------------------------------------------------------
    def start(self, system_prompt: str, task_prompt: str, info: dict[str, Any]) -> dict[str, Any]:
        """The history opens with the system prompt and the task prompt; no turn has been taken."""
        messages = [{"role": "system", "content": system_prompt}, {"role": "user", "content": task_prompt}]
        return {"messages": messages, "turns": 0, "tool_call_id": None}

    def respond(self, observation: str, state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """`arespond` for synchronous callers (not from inside a running event loop)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self._respond_and_close(observation, state))
        raise RuntimeError("OpenAIAgent.respond was called inside a running event loop: await arespond instead")

    async def _respond_and_close(self, observation: str, state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        try:
            return await self.arespond(observation, state)
        finally:
            await self.aclose()

    async def arespond(self, observation: str, state: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
        """Send the history (plus `observation` after the first turn) and return this turn's output."""
        messages = list(state["messages"])
        if state["turns"] > 0:  # on turn 1 the observation is the task prompt, already in the history
            if state["tool_call_id"] is not None:
                messages.append({"role": "tool", "tool_call_id": state["tool_call_id"], "content": observation})
            else:
                messages.append({"role": "user", "content": observation})
        msg = await self._complete(messages)

        calls = list(getattr(msg, "tool_calls", None) or [])
        reasoning = getattr(msg, "reasoning_content", None) or getattr(msg, "reasoning", None)
        reasoning = reasoning.strip() if isinstance(reasoning, str) and reasoning.strip() else None
        entry: dict[str, Any] = {"role": "assistant", "content": msg.content}
        call_id = None
        if calls:
            call = calls[0].model_dump(exclude_none=True)
            call_id = call.get("id") or f"call_{state['turns']}"
            call = {"id": call_id, "type": "function",
                    "function": {"name": call.get("function", {}).get("name", ""),
                                 "arguments": call.get("function", {}).get("arguments", "")}}
            entry["tool_calls"] = [call]
            output: Any = call if reasoning is None else _hermes_text(call, reasoning)
        else:
            text = msg.content or ""
            output = text if reasoning is None else f"<think>{reasoning}</think>\n{text}"
        messages.append(clean_json(entry))
        return clean_json(output), {"messages": messages, "turns": state["turns"] + 1, "tool_call_id": call_id}

    # ---- the request ------------------------------------------------------------------------------
    async def _complete(self, messages: list[dict[str, Any]]) -> Any:
        """One chat completion with the endpoint's retries; returns ``choices[0].message``."""
        kwargs: dict[str, Any] = {"model": self.model, "messages": messages, "tools": [INTERACT_TOOL]}
        if self.temperature is not None:
            kwargs["temperature"] = self.temperature
        if self.max_tokens is not None:
            kwargs["max_tokens"] = self.max_tokens
        if self.extra_body:
            kwargs["extra_body"] = self.extra_body
        sdk = self._loop_state().sdk
        return await self._with_retries(lambda: self._send(sdk, lambda: kwargs))


def _hermes_text(call: dict[str, Any], think: str) -> str:
    """One OpenAI tool call as Hermes text behind a think block (arguments kept as sent).

    >>> _hermes_text({"function": {"name": "f", "arguments": '{"x": 1}'}}, "why")
    '<think>why</think>\\n<tool_call>\\n{"name": "f", "arguments": {"x": 1}}\\n</tool_call>'
    """
    raw = call["function"]["arguments"]
    try:
        args: Any = json.loads(raw) if raw.strip() else {}
    except (json.JSONDecodeError, AttributeError, RecursionError):
        args = raw  # the parser reports invalid arguments the same way in either form
    try:
        payload = json.dumps({"name": call["function"]["name"], "arguments": args})
    except (RecursionError, ValueError):
        payload = json.dumps({"name": call["function"]["name"], "arguments": raw})
    return f"<think>{think}</think>\n<tool_call>\n{payload}\n</tool_call>"
