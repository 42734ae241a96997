"""Pull one JSON object out of an LLM's reply, tolerating the usual ways models get JSON wrong.

Simulator models are asked for a JSON object, but even at temperature 0 they wrap it in code fences,
add a sentence before or after it, write Python literals (single quotes, ``True``/``None``) or leave
a trailing comma. `parse_json_reply` accepts all of those; anything else raises `ValueError`, which
the LLM client treats as a garbage reply and retries.

Nothing here evaluates model text: the repair is a small tokenizer that rewrites the candidate into
strict JSON, which `json.loads` then parses.
"""

from __future__ import annotations

import json
import re
from typing import Any

from baorl.endpoint import split_think
from baorl.records import match_brace

__all__ = ["parse_json_reply"]

_FENCE = re.compile(r"```[ \t]*(?:json|JSON|javascript|js|python)?[ \t]*\n?(.*?)```", re.DOTALL)
_WORDS = {"True": "true", "False": "false", "None": "null", "true": "true", "false": "false", "null": "null"}


def parse_json_reply(text: str) -> dict[str, Any]:
    """Return the first JSON object found in `text`.

    Reasoning (``<think>...</think>``, as thinking models emit; see `split_think`) is dropped first.
    Then it tries, in order: the whole text as JSON; the contents of each code fence; the first
    balanced ``{...}`` object (and later ones if it does not parse). Each candidate is parsed as
    strict JSON first and, failing that, after a repair that converts single-quoted strings, Python
    ``True``/``False``/``None``, bare-word keys and values, and trailing commas.

    Raises:
        ValueError: no candidate parses to a JSON object (a top-level list or number does not count).

    Examples:
        Plain JSON, code fences and prose around the object:

        >>> parse_json_reply('{"answer": "Yes"}')
        {'answer': 'Yes'}
        >>> parse_json_reply('```json\\n{"answer": "No"}\\n```')
        {'answer': 'No'}
        >>> parse_json_reply('Sure! Here it is: {"answer": "Maybe", "n": [1, 2]} Hope that helps.')
        {'answer': 'Maybe', 'n': [1, 2]}

        Braces inside strings do not confuse the balanced-object search:

        >>> parse_json_reply('note {"reply": "use {x} here", "ok": true} end')
        {'reply': 'use {x} here', 'ok': True}

        Python-style literals, single quotes (with an apostrophe escaped), trailing commas:

        >>> parse_json_reply("{'answer': 'Yes', 'sure': True, 'why': None,}")
        {'answer': 'Yes', 'sure': True, 'why': None}
        >>> parse_json_reply("{'reply': 'it\\\\'s \\"fine\\"', 'covered': [0, 2,],}")
        {'reply': 'it\\'s "fine"', 'covered': [0, 2]}

        A thinking model's reasoning is ignored, braces in it included:

        >>> parse_json_reply('<think>maybe {"answer": "No"}? no.</think>{"answer": "Yes"}')
        {'answer': 'Yes'}

        Bare words as keys or values:

        >>> parse_json_reply('{answer: Yes}')
        {'answer': 'Yes'}

        Nothing usable:

        >>> parse_json_reply('I think the answer is yes.')
        Traceback (most recent call last):
        ...
        ValueError: no JSON object found in the reply: 'I think the answer is yes.'
        >>> parse_json_reply('[1, 2, 3]')
        Traceback (most recent call last):
        ...
        ValueError: no JSON object found in the reply: '[1, 2, 3]'
    """
    if not isinstance(text, str):
        raise ValueError(f"expected the reply as a string, got {type(text).__name__}")
    text = split_think(text)[1]
    candidates = [text.strip()]
    candidates += [m.group(1).strip() for m in _FENCE.finditer(text)]
    candidates += list(_balanced_objects(text))
    for cand in candidates:
        obj = _try_parse(cand)
        if obj is not None:
            return obj
    shown = text if len(text) <= 200 else text[:200] + "..."
    raise ValueError(f"no JSON object found in the reply: {shown!r}")


def _try_parse(candidate: str) -> dict[str, Any] | None:
    if not candidate:
        return None
    for attempt in (candidate, None):
        try:
            src = attempt if attempt is not None else _repair(candidate)
            obj = json.loads(src)
        except (ValueError, RecursionError):
            continue
        if isinstance(obj, dict):
            return obj
        return None
    return None


def _balanced_objects(text: str):
    """Yield each balanced ``{...}`` substring, outermost first, skipping braces inside strings."""
    start = text.find("{")
    while start != -1:
        end = match_brace(text, start)
        if end is not None:
            yield text[start : end + 1]
        start = text.find("{", start + 1)


def _repair(src: str) -> str:
    """Rewrite a near-JSON object into strict JSON (see `parse_json_reply`)."""
    out: list[str] = []
    i, n = 0, len(src)
    while i < n:
        ch = src[i]
        if ch in "\"'":
            value, i = _read_string(src, i)
            out.append(json.dumps(value))
            continue
        if ch.isalpha() or ch == "_":
            j = i
            while j < n and (src[j].isalnum() or src[j] in "_-"):
                j += 1
            word = src[i:j]
            out.append(_WORDS.get(word) or json.dumps(word))
            i = j
            continue
        if ch == ",":
            j = i + 1
            while j < n and src[j].isspace():
                j += 1
            if j < n and src[j] in "}]":
                i += 1  # trailing comma: drop it
                continue
        out.append(ch)
        i += 1
    return "".join(out)


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "/": "/", "\\": "\\", "'": "'", '"': '"'}


def _read_string(src: str, i: int) -> tuple[str, int]:
    """Read the quoted string starting at ``src[i]``; return its value and the index after it."""
    quote, i, buf = src[i], i + 1, []
    while i < len(src):
        ch = src[i]
        if ch == "\\" and i + 1 < len(src):
            nxt = src[i + 1]
            if nxt == "u" and re.fullmatch(r"[0-9a-fA-F]{4}", src[i + 2 : i + 6]):
                buf.append(chr(int(src[i + 2 : i + 6], 16)))
                i += 6
                continue
            buf.append(_ESCAPES.get(nxt, "\\" + nxt))
            i += 2
            continue
        if ch == quote:
            return "".join(buf), i + 1
        buf.append(ch)
        i += 1
    raise ValueError("unterminated string")
