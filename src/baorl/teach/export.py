"""Episode records -> SFT conversations (OpenAI messages with tool calls), and their validation.

**The SFT file** (``*.sft.jsonl``, the contract `baorl sft` reads with `read_sft_file`): one JSON
object per line::

    {"messages": [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": TASK_PROMPT},
        {"role": "assistant", "content": "<think>THINK</think>",
         "tool_calls": [{"type": "function", "function": {"name": "interact_with_env",
                                                          "arguments": "{\\"choice\\": \\"action\\", \\"content\\": \\"...\\"}"}}]},
        {"role": "tool", "content": FEEDBACK},
        ...,
        {"role": "assistant", ...}],
     "tools": [INTERACT_TOOL],
     "meta": {"gym": ..., "task_id": ..., "policy": ..., "score": ..., "success": ...}}

- ``arguments`` is a JSON string, as the OpenAI API sends it (Arrow keeps one column type).
- SYSTEM_PROMPT and TASK_PROMPT are what the gym gave the agent: ``info["system_prompt"]`` and the
  reset observation (records written by `baorl teach` carry them as ``system_prompt`` and
  ``task_prompt``; for other records they are re-created from the gym, which assumes the gym's
  default turn limit). An LLM teacher's extra behaviour instructions are *not* included.
- Each ``tool`` message is the observation the agent got next: the turn's feedback (with
  ``"\\nReward: r"`` appended when the gym ran with ``reward_in_obs``, as `baorl.gyms.base.Gym.astep`
  does). The last turn's feedback is dropped: nothing follows it, so a conversation ends with an
  assistant message.
- An assistant message's content is ``<think>THINK</think>`` (empty when the turn had no think
  text). Rendered by the ``chatml-tools`` template, the conversation is exactly the text the
  rollout engine builds for the same turns.
- An episode the agent ended with ``[finish]`` (termination ``finish``) ends with that turn as a
  plain assistant message, ``<think>THINK</think>\n[finish]``: the text the rollout engine parses
  as the stop, so a student learns when to stop (budget scheduling).
- Other turns without a valid tool call (choice null: a malformed call, a call the gym refused)
  cannot be written as a call: the conversation stops before the first such turn (decided here);
  an episode whose first turn is one gives no conversation.

**The ShareGPT file** (``*.sharegpt.jsonl``) holds the same conversations in LLaMA-Factory's
``sharegpt`` format (``{"conversations": [{"from": "human" | "function_call" | "observation",
"value": ...}], "system": ..., "tools": "<JSON list of function schemas>"}``, a function call's
value being ``<think>THINK</think>`` + ``{"name": ..., "arguments": {...}}``), and
``dataset_info.json`` beside it registers it for LLaMA-Factory (``dataset: NAME``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from baorl.gyms.tool import INTERACT_TOOL, TOOL_NAME
from baorl.records import Episode

__all__ = [
    "episode_prompts", "episode_to_conversation", "conversation_to_sharegpt", "write_jsonl_atomic",
    "write_dataset_info", "read_sft_file", "validate_conversation", "validate_sharegpt",
]

_ROLES = ("system", "user", "assistant", "tool")


# ---- episode -> conversation ---------------------------------------------------------------------
def _extra(ep: Episode, key: str) -> Any:
    return (ep.model_extra or {}).get(key)


def episode_prompts(ep: Episode, *, data: str | os.PathLike | None = None) -> tuple[str, str]:
    """The system and task prompts the agent saw in `ep`.

    Taken from the record's ``system_prompt`` / ``task_prompt`` fields when it has them (records of
    `baorl teach` do); otherwise re-created by resetting the gym on the task (from `data`, or the
    embedded set) with the episode's seed, under the gym's default turn limit.
    """
    system, task = _extra(ep, "system_prompt"), _extra(ep, "task_prompt")
    if isinstance(system, str) and isinstance(task, str):
        return system, task
    from baorl.gyms import get_task, gym_class

    cls = gym_class(ep.gym)
    # the prompts never consult the user simulator, so a placeholder stands in for gyms needing one
    gym = cls(get_task(ep.gym, ep.task_id, data), user=object() if cls.needs_user else None)
    obs, info = gym.reset(seed=ep.seed)
    return info["system_prompt"], obs


def _observation(feedback: str, reward: float, reward_in_obs: bool) -> str:
    return f"{feedback}\nReward: {reward:g}" if reward_in_obs else feedback


def _call(choice: str, content: str) -> dict[str, Any]:
    args = json.dumps({"choice": choice, "content": content})
    return {"type": "function", "function": {"name": TOOL_NAME, "arguments": args}}


def episode_to_conversation(
    ep: Episode,
    *,
    system_prompt: str | None = None,
    task_prompt: str | None = None,
    data: str | os.PathLike | None = None,
    reward_in_obs: bool | None = None,
) -> dict[str, Any] | None:
    """One episode as an SFT conversation (the format in this module's docstring), or None.

    Args:
        ep: the episode record.
        system_prompt, task_prompt: override the prompts (default: `episode_prompts`).
        data: the UserRL data file the episode's task came from, when prompts must be re-created.
        reward_in_obs: whether the agent's observations carried the reward suffix (default: the
            record's ``reward_in_obs`` field, else False, the gyms' default).

    Returns None when the episode has no turn that can be written as a tool call.
    """
    kept = []
    for turn in ep.turns:
        if turn.choice is None:
            break
        kept.append(turn)
    stop = ep.turns[-1] if ep.termination == "finish" and len(kept) == len(ep.turns) - 1 else None
    if not kept:
        return None
    if system_prompt is None or task_prompt is None:
        sys_p, task_p = episode_prompts(ep, data=data)
        system_prompt = sys_p if system_prompt is None else system_prompt
        task_prompt = task_p if task_prompt is None else task_prompt
    if reward_in_obs is None:
        reward_in_obs = bool(_extra(ep, "reward_in_obs"))
    messages: list[dict[str, Any]] = [{"role": "system", "content": system_prompt},
                                      {"role": "user", "content": task_prompt}]
    for i, turn in enumerate(kept):
        messages.append({"role": "assistant", "content": f"<think>{turn.think}</think>" if turn.think else "",
                         "tool_calls": [_call(turn.choice, turn.content)]})
        if i + 1 < len(kept) or stop is not None:
            messages.append({"role": "tool", "content": _observation(turn.feedback, turn.reward, reward_in_obs)})
    if stop is not None:
        messages.append({"role": "assistant",
                         "content": (f"<think>{stop.think}</think>\n" if stop.think else "") + "[finish]"})
    meta = {"gym": ep.gym, "task_id": ep.task_id, "policy": ep.policy, "score": ep.score, "success": ep.success}
    return {"messages": messages, "tools": [INTERACT_TOOL], "meta": meta}


def conversation_to_sharegpt(conv: dict[str, Any]) -> dict[str, Any]:
    """An SFT conversation in LLaMA-Factory's ``sharegpt`` format (default tags).

    >>> conv = {"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "U"},
    ...         {"role": "assistant", "content": "<think>t</think>", "tool_calls": [
    ...             {"type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}]}],
    ...         "tools": [{"type": "function", "function": {"name": "f"}}]}
    >>> conversation_to_sharegpt(conv)["conversations"][1]
    {'from': 'function_call', 'value': '<think>t</think>{"name": "f", "arguments": {"x": 1}}'}
    """
    system, turns = "", []
    for m in conv["messages"]:
        role = m["role"]
        if role == "system":
            system = m["content"]
        elif role == "user":
            turns.append({"from": "human", "value": m["content"]})
        elif role == "tool":
            turns.append({"from": "observation", "value": m["content"]})
        elif m.get("tool_calls"):
            fn = m["tool_calls"][0]["function"]
            call = json.dumps({"name": fn["name"], "arguments": json.loads(fn["arguments"])})
            turns.append({"from": "function_call", "value": (m.get("content") or "") + call})
        else:
            turns.append({"from": "gpt", "value": m.get("content") or ""})
    tools = [t.get("function", t) for t in conv.get("tools", [])]
    return {"conversations": turns, "system": system, "tools": json.dumps(tools)}


# ---- writing ---------------------------------------------------------------------------------------
def write_jsonl_atomic(path: str | os.PathLike, rows: Iterable[dict[str, Any]]) -> int:
    """Write JSON Lines to a temporary file and rename it over `path`; returns the row count
    (`baorl.records.write_jsonl`: atomic, line separators escaped, lone surrogates replaced)."""
    from baorl.records import write_jsonl

    return write_jsonl(path, list(rows))


def write_dataset_info(sharegpt_path: str | os.PathLike, name: str) -> Path:
    """Register `sharegpt_path` as dataset `name` in ``dataset_info.json`` beside it (merged in).

    LLaMA-Factory reads ``dataset_info.json`` from its ``dataset_dir``; point that at this folder
    and use ``dataset: NAME``.
    """
    sharegpt_path = Path(sharegpt_path)
    info_path = sharegpt_path.parent / "dataset_info.json"
    info: dict[str, Any] = {}
    if info_path.exists():
        try:
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ValueError(f"{info_path}: not valid JSON ({e.msg} at line {e.lineno}); fix or delete it") from e
        if not isinstance(info, dict):
            raise ValueError(f"{info_path}: expected a JSON object of datasets")
    info[name] = {
        "file_name": sharegpt_path.name,
        "formatting": "sharegpt",
        "columns": {"messages": "conversations", "system": "system", "tools": "tools"},
    }
    tmp = info_path.with_name(info_path.name + ".tmp")
    tmp.write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, info_path)
    return info_path


# ---- validation ------------------------------------------------------------------------------------
def _check_call(call: Any, tool_names: set[str] | None) -> str | None:
    """Why a tool call is broken, or None."""
    if not isinstance(call, dict) or call.get("type") != "function" or not isinstance(call.get("function"), dict):
        return 'a tool call must be {"type": "function", "function": {...}}'
    fn = call["function"]
    if not isinstance(fn.get("name"), str) or not fn["name"]:
        return "a tool call has no function name"
    if tool_names is not None and fn["name"] not in tool_names:
        return f"tool call to {fn['name']!r}, which is not among the conversation's tools"
    if not isinstance(fn.get("arguments"), str):
        return "tool call arguments must be a JSON string"
    try:
        args = json.loads(fn["arguments"])
    except json.JSONDecodeError:
        return f"tool call arguments are not JSON: {fn['arguments'][:80]!r}"
    if not isinstance(args, dict):
        return "tool call arguments must be a JSON object"
    return None


def validate_conversation(conv: Any) -> str | None:
    """Why `conv` is not a valid SFT conversation, or None when it is.

    Checked: a JSON object with a non-empty ``messages`` list; each message an object with a known
    role and string content (an assistant's may be null when it has tool calls); an optional system
    message first, then a user message; an assistant message only after a user or tool message; a
    tool message only after an assistant message with tool calls (at most one per call); tool calls
    of the OpenAI form with JSON-object arguments naming a tool of ``tools``; the last message from
    the assistant; ``tools``, when present, a list of function schemas; ``meta`` an object.
    """
    if not isinstance(conv, dict):
        return "a line must be a JSON object"
    msgs = conv.get("messages")
    if not isinstance(msgs, list) or not msgs:
        return 'missing or empty "messages" list'
    tools = conv.get("tools")
    tool_names = None
    if tools is not None:
        if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
            return '"tools" must be a list of tool schemas'
        tool_names = {(t.get("function") or t).get("name") for t in tools}
    if "meta" in conv and not isinstance(conv["meta"], dict):
        return '"meta" must be an object'
    open_calls = 0
    prev = None
    for k, m in enumerate(msgs):
        where = f"message {k}"
        if not isinstance(m, dict) or m.get("role") not in _ROLES:
            return f"{where}: role must be one of {', '.join(_ROLES)}"
        role, content = m["role"], m.get("content")
        calls = m.get("tool_calls")
        if not isinstance(content, str) and not (role == "assistant" and content is None and calls):
            return f"{where} ({role}): content must be a string"
        if role == "system" and k != 0:
            return f"{where}: a system message may only come first"
        if role == "user" and prev not in (None, "system", "assistant"):
            return f"{where}: a user message must follow the system prompt or an assistant reply"
        if role == "assistant":
            if prev not in ("user", "tool"):
                return f"{where}: an assistant message must follow a user or tool message"
            if calls is not None:
                if not isinstance(calls, list) or not calls:
                    return f"{where}: tool_calls must be a non-empty list"
                for call in calls:
                    why = _check_call(call, tool_names)
                    if why:
                        return f"{where}: {why}"
            open_calls = len(calls or [])
        if role == "tool":
            if open_calls == 0:
                return f"{where}: a tool message without a preceding tool call"
            open_calls -= 1
        if prev is None and role not in ("system", "user"):
            return f"{where}: a conversation starts with a system or user message"
        prev = role
    if prev != "assistant":
        return "the last message must be the assistant's (there is nothing to learn after it)"
    return None


def read_sft_file(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read and validate an SFT file; returns its conversations.

    Raises:
        FileNotFoundError: no such file.
        ValueError: naming ``path:line`` and the problem, for the first broken line (bad JSON or a
            conversation `validate_conversation` rejects), or when the file has no conversations.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such SFT file")
    out = []
    with path.open(encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                conv = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{i}: not valid JSON ({e.msg} at column {e.colno})") from None
            why = validate_conversation(conv)
            if why:
                raise ValueError(f"{path}:{i}: not a valid SFT conversation: {why}")
            out.append(conv)
    if not out:
        raise ValueError(f"{path}: no conversations in the file")
    return out


def validate_sharegpt(row: Any) -> str | None:
    """Why `row` would be skipped or rejected by LLaMA-Factory's sharegpt loader, or None.

    Mirrors its documented rules for default tags: human/observation messages at even positions,
    gpt/function_call at odd ones, an even count; a function call's value, after an optional
    leading ``<think>...</think>``, is JSON with ``name`` and ``arguments``; ``tools`` is a JSON list.
    """
    if not isinstance(row, dict) or not isinstance(row.get("conversations"), list):
        return 'missing "conversations" list'
    conv = row["conversations"]
    if not conv or len(conv) % 2:
        return "conversations must have an even, non-zero number of messages"
    for k, m in enumerate(conv):
        allowed = ("human", "observation") if k % 2 == 0 else ("gpt", "function_call")
        if not isinstance(m, dict) or m.get("from") not in allowed or not isinstance(m.get("value"), str):
            return f"message {k}: 'from' must be one of {allowed} with a string 'value'"
        if m["from"] == "function_call":
            value = m["value"]
            if value.startswith("<think>"):
                value = value[value.find("</think>") + len("</think>"):]
            try:
                call = json.loads(value)
            except json.JSONDecodeError:
                return f"message {k}: function_call value is not JSON after the think block"
            if not isinstance(call, dict) or "name" not in call or "arguments" not in call:
                return f"message {k}: function_call must name the function and its arguments"
    try:
        tools = json.loads(row.get("tools", "[]"))
    except (TypeError, json.JSONDecodeError):
        return '"tools" must be a JSON string'
    if not isinstance(tools, list):
        return '"tools" must be a JSON list'
    return None
