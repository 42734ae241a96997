"""The episode record: the one file format every baorl tool reads and writes.

Rollouts, evaluations, teacher data and validation dumps all save episodes as JSON Lines, one
`Episode` per line (spec: metrics.md, "The episode record"). Every metric is computable from these
records alone, so any run can be re-scored later without re-running it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Termination = Literal[
    "solved", "turn_limit", "token_budget", "no_tool_call", "finish", "simulator_error"
]
Choice = Literal["action", "search", "answer"]


class Turn(BaseModel):
    """One assistant generation and the gym's reply to it."""

    model_config = ConfigDict(extra="allow")

    choice: Choice | None = Field(description="the tool call's choice; null when the generation had no valid tool call")
    content: str = Field(default="", description="the tool call's content as the gym received it")
    reward: float = Field(default=0.0, description="the gym's step reward for this turn (unshaped)")
    feedback: str = Field(default="", description="the observation text the gym returned")
    user_involved: bool = Field(default=False, description="whether this turn's choice needs the user (U(tau))")
    think: str = Field(default="", description="the text inside <think>...</think>, if any")
    prompt_tokens: int = Field(default=0, description="tokens in the context before this generation")
    completion_tokens: int = Field(default=0, description="tokens the policy generated in this turn")


class Episode(BaseModel):
    """A whole episode: one task, one policy, every turn."""

    model_config = ConfigDict(extra="allow")

    gym: str = Field(description="gym name, e.g. 'function'")
    task_id: str = Field(description="the task's stable id inside its data source")
    policy: str = Field(default="", description="agent spec string, e.g. 'hf:embedded' or 'scripted:random'")
    seed: int = Field(default=0, description="the seed the episode was played with")
    turns: list[Turn] = Field(default_factory=list)
    score: float = Field(default=0.0, description="sum of the gym's step rewards (unshaped)")
    success: bool = Field(default=False, description="whether the gym declared the task solved")
    user_actions: int = Field(default=0, description="number of user-involved turns, U(tau)")
    termination: Termination = Field(description="why the episode ended")
    simulator: str = Field(default="none", description="'none', 'offline' or the simulator model's name")

    @classmethod
    def from_turns(cls, *, turns: list[Turn], **fields: Any) -> Episode:
        """Build a record, deriving `score` and `user_actions` from the turns."""
        return cls(
            turns=turns,
            score=float(sum(t.reward for t in turns)),
            user_actions=sum(t.user_involved for t in turns),
            **fields,
        )


class RecordFileError(ValueError):
    """A records file that cannot be read; the message names the file and line."""


def write_episodes(path: str | os.PathLike, episodes: Iterable[Episode], *, append: bool = False) -> int:
    """Write episodes as JSON Lines; returns how many were written. Each line is flushed whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("a" if append else "w", encoding="utf-8") as f:
        for ep in episodes:
            f.write(ep.model_dump_json() + "\n")
            n += 1
        f.flush()
        os.fsync(f.fileno())
    return n


def iter_episodes(path: str | os.PathLike, *, skip_partial_tail: bool = False) -> Iterator[Episode]:
    """Read and validate episode records.

    A bad line raises `RecordFileError` naming the file and line number. With
    `skip_partial_tail`, a truncated *last* line (a run killed mid-write) is dropped silently
    so that the episode is redone; damage anywhere else is still an error.
    """
    path = Path(path)
    if not path.exists():
        raise RecordFileError(f"{path}: no such records file")
    lines = path.read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield Episode.model_validate(json.loads(line))
        except (json.JSONDecodeError, ValidationError) as e:
            if skip_partial_tail and i == len(lines):
                return
            raise RecordFileError(f"{path}:{i}: not a valid episode record: {str(e).splitlines()[0]}") from e


def read_episodes(path: str | os.PathLike, **kw: Any) -> list[Episode]:
    """`iter_episodes` as a list."""
    return list(iter_episodes(path, **kw))
