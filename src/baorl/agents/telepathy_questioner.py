"""A scripted Telepathy player: the programmatic teacher for the embedded set.

It knows what the policy does not: the embedded entity list and each category's question bank.
It keeps the entities of the task's category that agree best with the answers so far, asks the
bank question that splits them most evenly, and names the entity when one candidate is left (or
on its last turn). It reads the category from the task prompt's ``Category:`` line, exactly as
a model would see it, and never looks at the hidden task.

Answers are scored softly, so an LLM user's occasional disagreement with the tables does not
empty the candidate set: a Yes against a "false" entry (or a No against "true") costs 1, any
other disagreement with a Maybe on either side costs 1/2, and the candidates are the entities
with the lowest cost. Against the offline user this is exact elimination.

>>> from baorl.gyms.telepathy import TelepathyGym
>>> from baorl.runs.play import play_episode
>>> from baorl.users.telepathy_offline import OfflineTelepathyUser
>>> task = next(t for t in TelepathyGym.embedded_tasks("all") if t.title == "Violin")
>>> ep = play_episode(TelepathyGym(task, user=OfflineTelepathyUser()), TelepathyQuestioner())
>>> ep.success, ep.turns[-1].content, ep.user_actions
(True, 'Violin', 1)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from baorl.agents.base import Agent, tool_call_text
from baorl.gyms.telepathy import TelepathyTask, embedded_set

_CATEGORY_LINE = re.compile(r"^\s*Category:\s*(.+?)\s*$", re.M | re.I)
_REPLY = re.compile(r"^\W*(yes|no|maybe)\b", re.I)
_COST = {("Yes", False): 1.0, ("No", True): 1.0, ("Maybe", True): 0.5, ("Maybe", False): 0.5,
         ("Yes", None): 0.5, ("No", None): 0.5}


@dataclass
class QuestionerState:
    """What the questioner remembers within one episode."""

    category: str | None
    max_turns: int
    turn: int = 0
    #: (attribute key, question, reply) for every question asked
    asked: list[tuple[str, str, str]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    #: what the last turn did: ("ask", key) or ("guess", entity title)
    pending: tuple[str, str] | None = None


def _category_key(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


class TelepathyQuestioner(Agent):
    """Twenty-questions teacher for the embedded Telepathy set (spec string ``scripted:telepathy-questioner``)."""

    name = "scripted:telepathy-questioner"

    def start(self, system_prompt: str, task_prompt: str, info: dict[str, Any]) -> QuestionerState:
        m = _CATEGORY_LINE.search(task_prompt)
        cat = _category_key(m.group(1)) if m else None
        known = embedded_set().categories
        return QuestionerState(category=cat if cat in known else None, max_turns=int(info.get("max_turns", 12)))

    def respond(self, observation: str, state: QuestionerState) -> tuple[str, QuestionerState]:
        self._read_reply(observation, state)
        state.turn += 1
        plan = f"Plan: turn {state.turn} of {state.max_turns}."
        if state.category is None:
            think = ("Memory: the task prompt names no category I have a question bank for. "
                     "Hypotheses: none. " + plan + " I cannot narrow this down, so I stop.")
            return f"<think>{think}</think>\n[finish]", state

        cands = self._candidates(state)
        memory = self._memory(state)
        hyp = "Hypotheses: " + (f"{len(cands)} candidate(s) fit the answers: " + ", ".join(t.title for t in cands)
                                if cands else "no entity I know fits every answer")
        if not cands:
            think = f"{memory} {hyp}. {plan} Every entity I know has been ruled out, so I stop."
            return f"<think>{think}</think>\n[finish]", state

        key, sizes = self._best_question(cands, state)
        last_turn = state.turn >= state.max_turns
        if len(cands) == 1 or key is None or last_turn:
            guess = cands[0]
            why = ("only one candidate is left" if len(cands) == 1
                   else "this is my last turn" if last_turn else "no question separates the candidates")
            think = f"{memory} {hyp}. {plan} {why.capitalize()}, so I guess {guess.title}."
            state.pending = ("guess", guess.title)
            return tool_call_text("answer", guess.title, think), state

        question = embedded_set().categories[state.category].attributes[key].question
        split = " / ".join(str(n) for n in sizes)
        think = (f"{memory} {hyp}. {plan} I ask \"{question}\", which splits the candidates "
                 f"{split} (yes / no / unsure).")
        state.pending = ("ask", key)
        return tool_call_text("action", question, think), state

    # ---- reasoning ----------------------------------------------------------------------------
    def _read_reply(self, observation: str, state: QuestionerState) -> None:
        if state.pending is None:
            return
        kind, what = state.pending
        state.pending = None
        if kind == "guess":
            state.rejected.append(what)  # a right guess ends the episode, so any reply means no
            return
        m = _REPLY.match(observation)
        reply = m.group(1).capitalize() if m else "Maybe"
        question = embedded_set().categories[state.category].attributes[what].question
        state.asked.append((what, question, reply))

    def _candidates(self, state: QuestionerState) -> list[TelepathyTask]:
        pool = [t for t in embedded_set().entities
                if t.category == state.category and t.title not in state.rejected]
        if not pool:
            return []
        costs = [sum(_COST.get((reply, t.attributes[key]), 0.0) for key, _, reply in state.asked) for t in pool]
        best = min(costs)
        return [t for t, c in zip(pool, costs, strict=True) if c == best]

    @staticmethod
    def _best_question(cands: list[TelepathyTask], state: QuestionerState) -> tuple[str | None, list[int]]:
        """The unasked bank question that splits the candidates most evenly.

        Candidates whose entry is unsure (null) are counted on both sides, since a user may answer
        either way for them: the score is (yes + unsure)^2 + (no + unsure)^2 + unsure^2, least wins,
        and ties go to the bank's order.
        """
        asked = {k for k, _, _ in state.asked}
        best: tuple[int, str, list[int]] | None = None
        for key in embedded_set().categories[state.category].attributes:
            if key in asked:
                continue
            sizes = [sum(t.attributes[key] is v for t in cands) for v in (True, False, None)]
            if max(sizes) == len(cands):
                continue  # tells nothing about these candidates
            yes, no, unsure = sizes
            score = (yes + unsure) ** 2 + (no + unsure) ** 2 + unsure**2
            if best is None or score < best[0]:
                best = (score, key, sizes)
        return (best[1], best[2]) if best else (None, [])

    @staticmethod
    def _memory(state: QuestionerState) -> str:
        if not state.asked and not state.rejected:
            return "Memory: nothing asked yet."
        parts = [f"{q} {r}" for _, q, r in state.asked]
        if state.rejected:
            parts.append("rejected guesses: " + ", ".join(state.rejected))
        return "Memory: " + "; ".join(parts) + "."
