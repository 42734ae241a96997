"""The behaviour checker: how often turns show BAO's behaviours (spec: bao.md §2), from records alone.

It reads any episode records (teacher, base model, SFT model, RL model) and flags each turn:

- ``memory`` / ``hypotheses`` / ``plan``: the think block has that section, found by its marker
  (case-insensitive, a label followed by a colon, optionally in Markdown bold or after ``#``):

  =============  ===============================================================================
  memory         Memory, Known, Known so far, Facts, Observations, Evidence, Recap, Summary, Notes
  hypotheses     Hypotheses, Hypothesis, Candidates, Candidate rules/entities, Possibilities,
                 Remaining candidates, Remaining hypotheses, Theories
  plan           Plan, Next step(s), Next action, Next query, Strategy, Budget
  =============  ===============================================================================

- ``repeat``: the turn is a query (choice ``action`` or ``search``) whose choice and normalised
  content (lower case, commas and runs of white space as one space, trailing ``?.!`` and quotes
  stripped) equal those of an earlier query of the same episode;
- ``answer_after_answer``: the turn's choice is ``answer`` and so was the previous turn's (user
  verification with no exploration in between: what BAO's information-seeking regulariser
  penalises in Function, Telepathy and Turtle, where ``answer`` is the user-involved choice).

**Rates** (every rate states its denominator; a rate with a zero denominator is None):

- ``memory_rate``, ``hypotheses_rate``, ``plan_rate``, ``all_three_rate``: turns with the
  section(s) / all turns (turns without a valid tool call included: their think counts too);
- ``repeat_rate``: repeated queries / query turns;
- ``answer_after_answer_rate``: answers right after an answer / answer turns;
- ``episodes_with_repeat``, ``episodes_with_answer_after_answer``: episodes with at least one
  such turn / episodes.

An `EpisodeBehaviour` gives the rates for one episode; `BehaviourReport` pools the counts of many
(rates over all their turns, i.e. micro-averages) and also gives ``mean_episode_all_three``, the
mean over episodes of each episode's ``all_three_rate``.

>>> from baorl.records import Episode, Turn
>>> ep = Episode(gym="function", task_id="t", termination="solved", turns=[
...     Turn(choice="search", content="test", think="Memory: none. Hypotheses: all. Plan: look."),
...     Turn(choice="answer", content="3", think="plan: guess"),
...     Turn(choice="answer", content="4")])
>>> b = check_episode(ep)
>>> b.plan, b.all_three, b.answers, b.answer_after_answer, b.answer_after_answer_rate
(2, 1, 2, 1, 0.5)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from baorl.records import Episode

__all__ = ["TurnFlags", "EpisodeBehaviour", "BehaviourReport", "turn_flags", "check_episode",
           "check_episodes", "behaviour_table", "SECTION_MARKERS", "QUERY_CHOICES"]

#: section name -> the labels that mark it (see the module docstring)
SECTION_MARKERS: dict[str, tuple[str, ...]] = {
    "memory": ("memory", "known", "known so far", "facts", "observations", "evidence", "recap", "summary",
               "notes"),
    "hypotheses": ("hypotheses", "hypothesis", "candidates", "candidate rules", "candidate entities",
                   "possibilities", "remaining candidates", "remaining hypotheses", "theories"),
    "plan": ("plan", "next step", "next steps", "next action", "next query", "strategy", "budget"),
}
#: the choices that count as queries (non-answer information gathering)
QUERY_CHOICES: frozenset[str] = frozenset({"action", "search"})


def _marker_regex(labels: tuple[str, ...]) -> re.Pattern[str]:
    alts = "|".join(sorted((re.escape(x).replace(r"\ ", r"\s+") for x in labels), key=len, reverse=True))
    # a label at a word boundary, optionally bold / a heading, followed by a colon
    return re.compile(rf"(?<![\w-])(?:#+\s*)?(?:\*\*|__)?(?:{alts})(?:\*\*|__)?\s*[:：]", re.I)


_MARKERS = {name: _marker_regex(labels) for name, labels in SECTION_MARKERS.items()}
_SPACES = re.compile(r"[\s,]+")


def normalise_query(content: str) -> str:
    """The form two queries are compared in.

    >>> normalise_query("  Is it  ALIVE? ") == normalise_query("is it alive")
    True
    >>> normalise_query("1, 2, 3, 4") == normalise_query("1 2 3 4")
    True
    """
    return _SPACES.sub(" ", content.lower()).strip().strip("?.!'\"` ").strip()


@dataclass(frozen=True)
class TurnFlags:
    """The behaviour flags of one turn (see the module docstring)."""

    memory: bool
    hypotheses: bool
    plan: bool
    query: bool
    repeat: bool
    answer: bool
    answer_after_answer: bool

    @property
    def all_three(self) -> bool:
        return self.memory and self.hypotheses and self.plan


def turn_flags(ep: Episode) -> list[TurnFlags]:
    """Flag every turn of `ep`, in order."""
    seen: set[tuple[str, str]] = set()
    out = []
    prev_choice = None
    for t in ep.turns:
        think = t.think or ""
        query = t.choice in QUERY_CHOICES
        key = (t.choice or "", normalise_query(t.content))
        repeat = query and key in seen
        if query:
            seen.add(key)
        answer = t.choice == "answer"
        out.append(TurnFlags(
            memory=bool(_MARKERS["memory"].search(think)), hypotheses=bool(_MARKERS["hypotheses"].search(think)),
            plan=bool(_MARKERS["plan"].search(think)), query=query, repeat=repeat, answer=answer,
            answer_after_answer=answer and prev_choice == "answer",
        ))
        prev_choice = t.choice
    return out


def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


@dataclass
class _Counts:
    """Turn counts shared by one episode and a pooled report."""

    turns: int = 0
    memory: int = 0
    hypotheses: int = 0
    plan: int = 0
    all_three: int = 0
    queries: int = 0
    repeats: int = 0
    answers: int = 0
    answer_after_answer: int = 0

    @property
    def memory_rate(self) -> float | None:
        """Turns with a memory section / turns."""
        return _rate(self.memory, self.turns)

    @property
    def hypotheses_rate(self) -> float | None:
        """Turns with a hypotheses section / turns."""
        return _rate(self.hypotheses, self.turns)

    @property
    def plan_rate(self) -> float | None:
        """Turns with a plan section / turns."""
        return _rate(self.plan, self.turns)

    @property
    def all_three_rate(self) -> float | None:
        """Turns with all three sections / turns."""
        return _rate(self.all_three, self.turns)

    @property
    def repeat_rate(self) -> float | None:
        """Queries repeating an earlier query of their episode / queries."""
        return _rate(self.repeats, self.queries)

    @property
    def answer_after_answer_rate(self) -> float | None:
        """Answers directly after an answer / answers."""
        return _rate(self.answer_after_answer, self.answers)

    def _add(self, other: _Counts) -> None:
        for k in _Counts.__dataclass_fields__:
            setattr(self, k, getattr(self, k) + getattr(other, k))

    def rates(self) -> dict[str, float | None]:
        return {k: getattr(self, k) for k in ("memory_rate", "hypotheses_rate", "plan_rate", "all_three_rate",
                                                "repeat_rate", "answer_after_answer_rate")}


@dataclass
class EpisodeBehaviour(_Counts):
    """Behaviour counts and rates of one episode."""

    gym: str = ""
    task_id: str = ""
    policy: str = ""
    success: bool = False
    flags: list[TurnFlags] = field(default_factory=list, repr=False)


def check_episode(ep: Episode) -> EpisodeBehaviour:
    """Count `ep`'s behaviour flags."""
    flags = turn_flags(ep)
    b = EpisodeBehaviour(gym=ep.gym, task_id=ep.task_id, policy=ep.policy, success=ep.success, flags=flags)
    b.turns = len(flags)
    for f in flags:
        b.memory += f.memory
        b.hypotheses += f.hypotheses
        b.plan += f.plan
        b.all_three += f.all_three
        b.queries += f.query
        b.repeats += f.repeat
        b.answers += f.answer
        b.answer_after_answer += f.answer_after_answer
    return b


@dataclass
class BehaviourReport(_Counts):
    """Pooled behaviour counts over many episodes; rates are over all their turns (micro-averages).

    Attributes beyond the turn counts: ``episodes``; ``successes``; ``episodes_with_repeat`` and
    ``episodes_with_answer_after_answer`` (episodes with at least one such turn); and
    ``sum_episode_all_three`` (the sum of defined per-episode all-three rates, for the macro mean).
    """

    episodes: int = 0
    successes: int = 0
    episodes_with_repeat: int = 0
    episodes_with_answer_after_answer: int = 0
    sum_episode_all_three: float = 0.0
    episodes_with_turns: int = 0
    per_episode: list[EpisodeBehaviour] = field(default_factory=list, repr=False)

    @property
    def mean_episode_all_three(self) -> float | None:
        """Mean over episodes with turns of each episode's all-three rate (a macro-average)."""
        return _rate(self.sum_episode_all_three, self.episodes_with_turns)  # type: ignore[arg-type]

    @property
    def repeat_episode_rate(self) -> float | None:
        """Episodes with at least one repeated query / episodes."""
        return _rate(self.episodes_with_repeat, self.episodes)

    @property
    def answer_after_answer_episode_rate(self) -> float | None:
        """Episodes with at least one answer right after an answer / episodes."""
        return _rate(self.episodes_with_answer_after_answer, self.episodes)

    def to_dict(self) -> dict[str, Any]:
        """Counts and rates as plain JSON-ready values (no per-episode detail)."""
        counts = {k: v for k, v in asdict(self).items() if k != "per_episode"}
        return {
            **counts, **self.rates(),
            "mean_episode_all_three": self.mean_episode_all_three,
            "repeat_episode_rate": self.repeat_episode_rate,
            "answer_after_answer_episode_rate": self.answer_after_answer_episode_rate,
            "success_rate": _rate(self.successes, self.episodes),
            "turns_per_episode": _rate(self.turns, self.episodes),
            "answers_per_episode": _rate(self.answers, self.episodes),
        }


def check_episodes(episodes: Iterable[Episode]) -> BehaviourReport:
    """Check every episode and pool the counts."""
    report = BehaviourReport()
    for ep in episodes:
        b = check_episode(ep)
        report.per_episode.append(b)
        report._add(b)
        report.episodes += 1
        report.successes += b.success
        report.episodes_with_repeat += b.repeats > 0
        report.episodes_with_answer_after_answer += b.answer_after_answer > 0
        if b.turns:
            report.episodes_with_turns += 1
            report.sum_episode_all_three += b.all_three / b.turns
    return report


def _pct(num: int, den: int) -> str:
    return f"{num / den:.1%} ({num}/{den})" if den else "n/a (0)"


def behaviour_table(groups: dict[str, BehaviourReport], title: str = "behaviour checker") -> Any:
    """A rich table: one row per measure, one column per group; each rate shows numerator/denominator."""
    from rich import box
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1), pad_edge=False,
                  caption="'ep ≥1': episodes with at least one such turn")
    table.add_column("measure", no_wrap=True)
    table.add_column("over", no_wrap=True, style="dim")
    for name in groups:
        table.add_column(name, overflow="fold")
    reports = list(groups.values())
    rows: list[tuple[str, str, Callable[[BehaviourReport], str]]] = [
        ("episodes", "", lambda r: str(r.episodes)),
        ("turns / episode", "episodes", lambda r: f"{r.turns / r.episodes:.2f}" if r.episodes else "n/a"),
        ("answers / episode", "episodes", lambda r: f"{r.answers / r.episodes:.2f}" if r.episodes else "n/a"),
        ("success", "episodes", lambda r: _pct(r.successes, r.episodes)),
        ("memory", "turns", lambda r: _pct(r.memory, r.turns)),
        ("hypotheses", "turns", lambda r: _pct(r.hypotheses, r.turns)),
        ("plan", "turns", lambda r: _pct(r.plan, r.turns)),
        ("all three", "turns", lambda r: _pct(r.all_three, r.turns)),
        ("repeated query", "queries", lambda r: _pct(r.repeats, r.queries)),
        ("ep ≥1 repeated query", "episodes", lambda r: _pct(r.episodes_with_repeat, r.episodes)),
        ("answer after answer", "answers", lambda r: _pct(r.answer_after_answer, r.answers)),
        ("ep ≥1 answer after answer", "episodes", lambda r: _pct(r.episodes_with_answer_after_answer, r.episodes)),
    ]
    for label, over, cell in rows:
        table.add_row(label, over, *(cell(r) for r in reports))
    return table
