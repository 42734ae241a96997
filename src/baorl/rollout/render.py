"""Render conversations to token ids without ever re-tokenising what the policy generated.

A conversation the engine plays is ``system, user (task), assistant, tool, assistant, tool, …``.
Its rendering by a chat template is cut into pieces that the engine concatenates as token ids::

    prompt      = render([system, user], add_generation_prompt=True)
    after turn  = END + TOOL(observation) + GEN
    full text   = prompt + a_1 + (END + TOOL(o_1) + GEN) + a_2 + …

where ``a_k`` is the exact text of the policy's k-th generation (its tokens, never re-tokenised),
``END`` closes an assistant message (``<|im_end|>\\n`` in ChatML), ``TOOL(o)`` renders the tool
message and ``GEN`` opens the next assistant message. Only ``prompt`` and the observation
segments are tokenised. The segment is cut out of the template's own output (a dummy conversation
rendered with and without the tool message), so any template that renders assistant messages
verbatim and earlier messages independently of later ones works; `ChatRenderer` checks this
"prefix property" on construction and raises `TemplateError` for a template that breaks it (for
example one that drops earlier turns' reasoning, as Qwen3's shipped template does).

When the policy itself emitted the end-of-turn token (``<|im_end|>``), that token is its own,
sampled, and the segment starts after it; when it stopped at the end of a tool call, the
segment starts with the end-of-turn token (not sampled: loss mask 0).

Every segment starts right after a special token or at a special token, so tokenising it alone
gives the same ids as tokenising the whole rendered conversation.
"""

from __future__ import annotations

from typing import Any

from baorl.gyms.tool import INTERACT_TOOL
from baorl.models.templates import chat_template

_SENTINELS = ("\u27e6A1\u27e7 first reply", "\u27e6A2\u27e7 second reply")
_DUMMY_OBS = ("\u27e6O1\u27e7 first observation", "\u27e6O2\u27e7 second observation")


class TemplateError(ValueError):
    """A chat template the token-exact engine cannot use; the message says why."""


class ChatRenderer:
    """Render a gym conversation for one tokenizer and chat template, piece by piece.

    Args:
        tokenizer: a transformers tokenizer.
        template: a template name for `baorl.models.chat_template` (``auto``, ``native``,
            ``chatml-tools``, ``qwen3``) or the Jinja source itself (it must contain ``{%``).
        tools: the tool schemas rendered into the system turn (default: the one
            ``interact_with_env`` tool).
        template_kwargs: extra variables for the template (e.g. ``{"enable_thinking": False}``).
    """

    def __init__(
        self,
        tokenizer: Any,
        template: str = "auto",
        *,
        tools: list[dict] | None = None,
        template_kwargs: dict[str, Any] | None = None,
    ) -> None:
        self.tokenizer = tokenizer
        self.template = template if "{%" in template else chat_template(tokenizer, template)
        self.tools = [INTERACT_TOOL] if tools is None else tools
        self.template_kwargs = dict(template_kwargs or {})
        self._check_and_cut()

    # ---- rendering ------------------------------------------------------------------------------
    def render(self, messages: list[dict[str, str]], *, add_generation_prompt: bool) -> str:
        """The template's text for `messages` (tools included)."""
        return self.tokenizer.apply_chat_template(
            messages, tools=self.tools, chat_template=self.template, tokenize=False,
            add_generation_prompt=add_generation_prompt, **self.template_kwargs,
        )

    def encode(self, text: str) -> list[int]:
        """Token ids of template text (special tokens in the text map to their ids; no BOS added)."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def decode(self, ids: list[int]) -> str:
        """Exact text of token ids (special tokens kept, no clean-up of spaces)."""
        return self.tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def prompt_text(self, system: str, task: str) -> str:
        """The first prompt: system and task messages plus the generation prompt."""
        return self.render(
            [{"role": "system", "content": system}, {"role": "user", "content": task}], add_generation_prompt=True
        )

    def observation_text(self, observation: str, *, policy_ended_turn: bool) -> str:
        """The text between one assistant generation and the next: END + TOOL(observation) + GEN.

        With `policy_ended_turn` the policy already emitted the end-of-turn token, so the text
        starts after it.
        """
        msgs = [*self._base, {"role": "assistant", "content": _SENTINELS[0]},
                {"role": "tool", "content": observation}]
        full = self.render(msgs, add_generation_prompt=True)
        cut = full.index(_SENTINELS[0], len(self._base_text)) + len(_SENTINELS[0])
        text = full[cut:]
        if policy_ended_turn:
            text = text[len(self.eot_text):]
        return text

    # ---- the prefix property --------------------------------------------------------------------
    def _check_and_cut(self) -> None:
        self._base = [{"role": "system", "content": "\u27e6S\u27e7"}, {"role": "user", "content": "\u27e6U\u27e7"}]
        self._base_text = self.render(self._base, add_generation_prompt=True)
        # the text after an assistant message's content: END (+ TOOL + GEN)
        closed = self.render([*self._base, {"role": "assistant", "content": _SENTINELS[0]}],
                             add_generation_prompt=False)
        head = self._base_text + _SENTINELS[0]
        if not closed.startswith(head):
            raise TemplateError(
                "the chat template does not render an assistant message as generation prompt + its text "
                "verbatim, so the policy's tokens could not be kept as generated; use chat_template="
                "'chatml-tools' or 'qwen3'"
            )
        self.end_text = closed[len(head):]
        end_ids = self.encode(self.end_text) if self.end_text else []
        special = set(self.tokenizer.all_special_ids) | set(getattr(self.tokenizer, "added_tokens_decoder", {}))
        #: the template's end-of-turn token id (None when the template closes a turn with plain text)
        self.eot_id: int | None = end_ids[0] if end_ids and end_ids[0] in special else None
        self.eot_text = self.decode([self.eot_id]) if self.eot_id is not None else ""
        if self.eot_id is not None and not self.end_text.startswith(self.eot_text):
            raise TemplateError("the template's end-of-turn text does not decode back to itself")

        # a two-turn conversation must equal the concatenation of its pieces
        msgs = [*self._base]
        expected = self._base_text
        for k in range(2):
            msgs += [{"role": "assistant", "content": _SENTINELS[k]}, {"role": "tool", "content": _DUMMY_OBS[k]}]
            expected += _SENTINELS[k] + self.observation_text(_DUMMY_OBS[k], policy_ended_turn=False)
        actual = self.render(msgs, add_generation_prompt=True)
        if actual != expected:
            raise TemplateError(
                "the chat template renders a message differently depending on later or earlier turns "
                "(it breaks the prefix property), so appending observation tokens would not reproduce "
                "what the template renders; use chat_template='chatml-tools' or 'qwen3'"
            )
