"""A tolerant parser from whatever an agent emitted to one `interact_with_env` call.

Accepted forms, tried in this order:

1. an OpenAI tool-call object (``{"type": "function", "function": {"name": ..., "arguments": "{json}"}}``,
   or the bare ``{"name": ..., "arguments": {...}}``), or a list of them (the first is used);
2. Hermes/Qwen text: ``<tool_call>{"name": "interact_with_env", "arguments": {...}}</tool_call>``
   (a missing closing tag is tolerated, e.g. when generation stopped at the tag);
3. a bracket string typed directly: ``[answer] 42``, ``[action] 1 2 3 4``, ``[finish]``.

The text inside ``<think>...</think>`` is returned separately; it never counts as a tool call.

Whatever a model emits is parsed without raising: a call nested too deeply for ``json`` is a
malformed call (its error says so), and lone surrogates (``"\\ud800"`` in an endpoint's JSON) are
replaced by U+FFFD before anything else, so the text can be recorded.

>>> parse_action('<think>try it</think><tool_call>{"name": "interact_with_env", '
...              '"arguments": {"choice": "answer", "content": "42"}}</tool_call>')
ParsedAction(choice='answer', content='42', think='try it', error=None)
>>> parse_action("[action] 1 2 3 4").choice
'action'
>>> parse_action("I think the answer is 42").error
'no tool call found'
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from baorl.endpoint import split_think
from baorl.gyms.tool import CHOICES, TOOL_NAME
from baorl.records import clean_json, clean_text, match_brace

_TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)
_BRACKET = re.compile(r"^\s*\[(\w+)\]\s*(.*)$", re.S)


@dataclass(frozen=True)
class ParsedAction:
    """The result of parsing one agent generation.

    `choice` is one of ``action``/``search``/``answer``, ``finish`` for the bracket form
    ``[finish]``, or None when no valid tool call was found; `error` then says why.
    """

    choice: str | None
    content: str = ""
    think: str = ""
    error: str | None = None

    @property
    def as_text(self) -> str:
        """The string form a gym receives: ``"[choice] content"``."""
        return f"[{self.choice}] {self.content}".rstrip() if self.choice else ""


def extract_think(text: str) -> str:
    """The text of the first ``<think>`` block (empty if there is none); see `split_think`."""
    return split_think(text)[0] or ""


class _TooDeep(ValueError):
    """JSON nested deeper than the parser's recursion limit."""


def _load_json(s: str) -> Any:
    """Parse JSON; `json.JSONDecodeError` when it is not, `_TooDeep` when it nests too deeply."""
    s = s.strip()
    try:
        try:
            return json.loads(s)
        except json.JSONDecodeError:
            # models often append stray text after the object: keep the first balanced object
            start = s.find("{")
            end = match_brace(s, start) if start != -1 else None
            if end is None:
                raise
            return json.loads(s[start : end + 1])
    except RecursionError:
        raise _TooDeep("nested too deeply") from None


def _from_call(call: Any, think: str) -> ParsedAction:
    """Validate one tool call given as a dict (OpenAI object or Hermes payload)."""
    if not isinstance(call, dict):
        return ParsedAction(None, think=think, error="tool call is not a JSON object")
    if "function" in call and isinstance(call["function"], dict):
        call = call["function"]
    name = call.get("name")
    if name != TOOL_NAME:
        return ParsedAction(None, think=think, error=f"unknown tool {name!r}; the only tool is {TOOL_NAME}")
    args = call.get("arguments", call.get("parameters", {}))
    if isinstance(args, str):
        try:
            args = _load_json(args) if args.strip() else {}
        except _TooDeep:
            return ParsedAction(None, think=think, error="tool call arguments are nested too deeply")
        except json.JSONDecodeError:
            return ParsedAction(None, think=think, error="tool call arguments are not valid JSON")
    if not isinstance(args, dict):
        return ParsedAction(None, think=think, error="tool call arguments are not a JSON object")
    choice = args.get("choice")
    content = args.get("content", "")
    if isinstance(choice, str):
        choice = choice.strip().lower()
    if choice not in CHOICES:
        return ParsedAction(None, think=think, error=f"choice must be one of {', '.join(CHOICES)}; got {choice!r}")
    if not isinstance(content, str):
        try:
            content = json.dumps(content) if isinstance(content, (list, dict)) else str(content)
        except (RecursionError, ValueError):
            return ParsedAction(None, think=think, error="tool call content is nested too deeply")
    return ParsedAction(choice, clean_text(content.strip()), think)


def parse_action(output: Any) -> ParsedAction:
    """Parse an agent's output (text, tool-call dict or list of tool calls) into one call."""
    try:
        output = clean_json(output)
    except RecursionError:  # a tool-call object nested too deeply to walk
        return ParsedAction(None, error="tool call is nested too deeply")
    if isinstance(output, list):
        if not output:
            return ParsedAction(None, error="empty tool-call list")
        return _from_call(output[0], "")
    if isinstance(output, dict):
        return _from_call(output, "")
    if not isinstance(output, str):
        return ParsedAction(None, error=f"cannot parse an action from {type(output).__name__}")

    think, body = split_think(output)
    think = think or ""
    m = _TOOL_CALL.search(body)
    if m:
        try:
            payload = _load_json(m.group(1))
        except _TooDeep:
            return ParsedAction(None, think=think, error="tool call is nested too deeply")
        except json.JSONDecodeError:
            return ParsedAction(None, think=think, error="tool call is not valid JSON")
        return _from_call(payload, think)
    m = _BRACKET.match(body.strip())
    if m:
        choice, content = m.group(1).lower(), m.group(2).strip()
        if choice == "finish":
            return ParsedAction("finish", "", think)
        if choice in CHOICES:
            return ParsedAction(choice, content, think)
        return ParsedAction(None, think=think, error=f"unknown choice [{choice}]; use one of {', '.join(CHOICES)}")
    return ParsedAction(None, think=think, error="no tool call found")
