"""The behaviour instructions baorl adds to an LLM teacher's system prompt (spec: bao.md §2).

The gym's own system prompt states the game; these instructions, appended to it for the teacher
only, ask for the two behaviour families in a ``<think>`` block with three labelled sections:

- retrospective reasoning: ``Memory:`` (a condensed record of what has been learned) and
  ``Hypotheses:`` (the candidates that still fit, pruned after each feedback);
- prospective planning: ``Plan:`` (turns left, and the query that best separates the remaining
  hypotheses, or the answer once the evidence supports one).

The section names are the ones `baorl.teach.checker` looks for. The SFT conversations exported from
the teacher's episodes use the gym's system prompt *without* these instructions: the student must
learn to show the behaviours under the prompt it sees in RL and evaluation.

>>> text = behaviour_instructions("function", max_turns=15)
>>> all(s in text for s in ("Memory:", "Hypotheses:", "Plan:", "15"))
True
"""

from __future__ import annotations

#: the three section markers, in the order the think block lists them
SECTIONS: tuple[str, str, str] = ("Memory:", "Hypotheses:", "Plan:")

_GENERAL = """\
# How to think before every tool call

Write your reasoning as the text of your message, inside <think>...</think>, in exactly these three
labelled sections, and then make exactly one tool call in the same message:

<think>
Memory: a condensed record of everything learned so far: each query you made and the result it
got, and every answer the user rejected. On the first turn write "nothing observed yet".
Hypotheses: {hypotheses}. Re-check them against the latest feedback: drop every one it
contradicts and say which you dropped. Say how many remain.
Plan: "turn k of {max_turns}" and how many turns are left. Then the next step: the query whose
possible results best separate the remaining hypotheses (say why), or the answer, when the
evidence supports it.
</think>

Rules:
- Never repeat a query you have already made: its result is in your Memory.
- {answer_rule}
- A rejected answer is evidence: remove it (and every hypothesis that predicts it) and gather new
  evidence before answering again; do not send two answers in a row.
- Spend the budget deliberately: you have {max_turns} turns. Leave room to answer, and when only
  one turn is left, answer with the best-supported candidate.
- Keep each section short and factual; do not restate these instructions."""

#: per gym: what a hypothesis is, and when answering is justified
_GYM_HINTS: dict[str, dict[str, str]] = {
    "function": {
        "hypotheses": ("the candidate rules for f (built from a, b, c, d with + - * / ** and parentheses) "
                       "that agree with every probe so far, and the value each gives on the test case"),
        "answer_rule": ("Answer only when every remaining candidate rule gives the same value on the test "
                        "case; while they disagree, probe inputs on which they disagree most. Look up the test "
                        "case first."),
    },
    "telepathy": {
        "hypotheses": "the entities of the stated category that fit every answer so far",
        "answer_rule": ("Guess only when one entity clearly fits all the answers; until then ask the yes/no "
                        "question that splits the remaining candidates most evenly."),
    },
    "turtle": {
        "hypotheses": "the explanations of the story that are consistent with every answer so far",
        "answer_rule": ("Submit an explanation only when the answers support one explanation of the whole "
                        "story; until then ask the yes/no question that best separates the explanations."),
    },
    "intention": {
        "hypotheses": ("the user's possible intentions and the details still missing from the request, most "
                       "important first"),
        "answer_rule": ("Every call is a question to the user: ask about the most important unsettled "
                        "detail, one at a time, and never re-ask what the user has already settled."),
    },
}
_DEFAULT_HINTS = {
    "hypotheses": "the candidate explanations that are consistent with everything observed so far",
    "answer_rule": "Answer only when the evidence supports one answer; until then query to separate the candidates.",
}


def behaviour_instructions(gym: str, max_turns: int = 15) -> str:
    """The instructions appended to gym `gym`'s system prompt for an LLM teacher.

    Args:
        gym: the gym's registry name (unknown gyms get generic wording).
        max_turns: the episode's turn limit T, quoted in the ``Plan`` instructions.
    """
    hints = _GYM_HINTS.get(gym, _DEFAULT_HINTS)
    return _GENERAL.format(max_turns=max_turns, **hints)


def teacher_system_prompt(gym_system_prompt: str, gym: str, max_turns: int = 15) -> str:
    """The system prompt an LLM teacher sees: the gym's, then the behaviour instructions.

    >>> teacher_system_prompt("Play.", "telepathy", 12).startswith("Play.\\n\\n# How to think")
    True
    """
    return f"{gym_system_prompt.rstrip()}\n\n{behaviour_instructions(gym, max_turns)}"
