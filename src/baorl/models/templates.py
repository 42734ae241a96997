"""Chat templates baorl renders conversations with (Jinja, as transformers' `apply_chat_template` takes).

- ``chatml-tools``: ChatML with the tools listed in the system turn and Hermes-style
  ``<tool_call>{json}</tool_call>`` calls; tool results come back as a user turn wrapped in
  ``<tool_response>``. The default for the embedded SmolLM2 (whose own template knows no tools).
- ``qwen3``: the Qwen3 conversation format (``# Tools`` system section with ``<tools>``,
  ``<think>`` reasoning, ``<tool_response>`` user turns). Unlike Qwen3's shipped template it never
  drops earlier turns' reasoning: for token-exact RL the context must be what the policy saw.
- ``native``: the tokenizer's own template.

Assistant messages are rendered verbatim: their `content` is the exact text the policy generated
(think block and tool call included), so rendering never re-formats the policy's tokens.
Structured ``tool_calls`` are written after the content as ``\\n<tool_call>\\n{"name": …,
"arguments": …}\\n</tool_call>``, a string ``arguments`` verbatim: with ``json.dumps`` of the
arguments this is exactly what `baorl.agents.tool_call_text` writes.

What the policy writes in a turn (content, tool calls and the end-of-turn token ``<|im_end|>``,
not the ``\\n`` after it) lies between ``{% generation %}`` markers, so transformers'
``return_assistant_tokens_mask`` (and TRL's ``assistant_only_loss``) train exactly on what the
rollout engine lets the policy generate; the markers do not change the text.

(transformers renders with ``trim_blocks``: a newline right after a block tag is dropped, so
newlines that must follow one are written as ``{{ '\\n' }}``.) Both templates write a turn as
``<|im_start|>ROLE\\n…<|im_end|>\\n``:

>>> from transformers.utils.chat_template_utils import render_jinja_template
>>> msgs = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
>>> (text,), (spans,) = render_jinja_template(
...     [msgs], chat_template=CHAT_TEMPLATES["chatml-tools"], return_assistant_tokens_mask=True)
>>> text
'<|im_start|>user\\nhi<|im_end|>\\n<|im_start|>assistant\\nyo<|im_end|>\\n'
>>> [text[a:b] for a, b in spans]
['yo<|im_end|>']
"""

from __future__ import annotations

from typing import Any

# shared by both templates: a system turn without tools, later system turns, tool results
_SYSTEM_AND_TOOL_TURNS = (
    "{% elif messages[0].role == 'system' %}"
    "<|im_start|>system\n{{ messages[0].content }}<|im_end|>\n"
    "{% endif %}"
    "{% for message in messages %}"
    "{% if message.role == 'system' %}"
    "{% if not loop.first %}<|im_start|>system\n{{ message.content }}<|im_end|>\n{% endif %}"
    "{% elif message.role == 'tool' %}"
    "<|im_start|>user\n<tool_response>\n{{ message.content }}\n</tool_response><|im_end|>\n"
)
# shared: an assistant turn's structured tool calls, its end, and any other role
_CALLS_AND_OTHER_ROLES = (
    "{% for call in message.tool_calls or [] %}"
    "{% set fn = call.function if call.function is defined else call %}"
    "{{ '\\n' }}<tool_call>\n{\"name\": \"{{ fn.name }}\", \"arguments\": "
    "{{ fn.arguments if fn.arguments is string else fn.arguments | tojson }}}\n</tool_call>"
    "{% endfor %}<|im_end|>{% endgeneration %}{{ '\\n' }}"
    "{% else %}"
    "<|im_start|>{{ message.role }}\n{{ message.content }}<|im_end|>\n"
)

_CHATML_TOOLS = (
    "{% if tools %}"
    "<|im_start|>system\n"
    "{% if messages[0].role == 'system' %}\n{{ messages[0].content }}\n{% endif %}\n\n"
    "You have access to these tools (JSON schemas):\n<tools>\n"
    "{% for tool in tools %}\n{{ tool | tojson }}{% endfor %}\n</tools>\n\n"
    "To call a tool, write one JSON object inside tags:\n"
    "<tool_call>\n{\"name\": \"TOOL_NAME\", \"arguments\": {ARGUMENTS}}\n</tool_call><|im_end|>\n"
    + _SYSTEM_AND_TOOL_TURNS +
    "{% elif message.role == 'assistant' %}"
    "<|im_start|>assistant\n{% generation %}{{ message.content or '' }}"
    + _CALLS_AND_OTHER_ROLES +
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_QWEN3 = (
    "{% if tools %}"
    "<|im_start|>system\n"
    "{% if messages[0].role == 'system' %}\n{{ messages[0].content }}\n\n{% endif %}\n"
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
    "{% for tool in tools %}\n{{ tool | tojson }}{% endfor %}\n</tools>\n\n"
    "For each function call, return a json object with function name and arguments within "
    "<tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \"arguments\": "
    "<args-json-object>}\n</tool_call><|im_end|>\n"
    + _SYSTEM_AND_TOOL_TURNS +
    "{% elif message.role == 'assistant' %}"
    "<|im_start|>assistant\n{% generation %}"
    "{% if message.reasoning_content %}<think>\n{{ message.reasoning_content }}\n</think>\n\n{% endif %}"
    "{{ message.content or '' }}"
    + _CALLS_AND_OTHER_ROLES +
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}"
    "{% endif %}"
)

CHAT_TEMPLATES: dict[str, str] = {"chatml-tools": _CHATML_TOOLS, "qwen3": _QWEN3}


def chat_template(tokenizer: Any, name: str = "auto") -> str:
    """The Jinja template to render with: a named one, the tokenizer's own, or ``auto``.

    ``auto`` keeps a tokenizer template that already handles tools, else uses ``chatml-tools``.
    """
    if name == "native" or (name == "auto" and "tools" in (getattr(tokenizer, "chat_template", None) or "")):
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("the tokenizer has no chat template of its own; use chat_template='chatml-tools'")
        return tokenizer.chat_template
    if name == "auto":
        return CHAT_TEMPLATES["chatml-tools"]
    if name not in CHAT_TEMPLATES:
        raise ValueError(f"unknown chat template {name!r}; choose auto, native or one of {sorted(CHAT_TEMPLATES)}")
    return CHAT_TEMPLATES[name]
