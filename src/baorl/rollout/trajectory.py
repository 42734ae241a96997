"""What the rollout engine returns per episode: the episode record plus its tokens, for training."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from baorl.records import Episode


@dataclass
class Trajectory:
    """One episode as the trainer needs it.

    ``response_ids`` are all tokens after the prompt; ``response_mask`` is 1 exactly on the
    tokens the policy sampled; ``logprobs`` (aligned, 0.0 where the mask is 0) are their
    log-probabilities; ``turn_spans[k] = (start, end)`` is turn k's sampled tokens in
    ``response_ids``. Turns (and their rewards and choices) are ``episode.turns``, one per span;
    each turn also records why its generation stopped, ``stop_reason``: ``stop`` (an end token),
    ``tool_call`` (a stop string), ``length`` (the per-turn cap) or ``budget`` (the episode's).

    >>> from baorl.records import Turn
    >>> ep = Episode.from_turns(turns=[Turn(choice="answer", reward=1.0)], gym="function", task_id="t",
    ...                         termination="solved", success=True)
    >>> traj = Trajectory(ep, [1, 2], [5, 6, 7, 8], [1, 1, 0, 0], [-0.5, -0.1, 0.0, 0.0], [(0, 2)])
    >>> traj.turn_rewards, traj.turn_choices, traj.turn_lengths
    ([1.0], ['answer'], [2])
    >>> Trajectory.from_record(traj.to_record()) == traj
    True
    """

    episode: Episode
    prompt_ids: list[int]
    response_ids: list[int]
    response_mask: list[int]
    logprobs: list[float]
    turn_spans: list[tuple[int, int]]

    @property
    def turn_rewards(self) -> list[float]:
        return [t.reward for t in self.episode.turns]

    @property
    def turn_choices(self) -> list[str | None]:
        return [t.choice for t in self.episode.turns]

    @property
    def turn_lengths(self) -> list[int]:
        return [end - start for start, end in self.turn_spans]

    def to_record(self) -> dict[str, Any]:
        """The episode record with the token fields added (JSON-able; `Episode` keeps extra fields)."""
        return {**self.episode.model_dump(), "prompt_ids": self.prompt_ids, "response_ids": self.response_ids,
                "response_mask": self.response_mask, "logprobs": self.logprobs,
                "turn_spans": [list(s) for s in self.turn_spans]}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Trajectory:
        rec = dict(record)
        tokens = {k: rec.pop(k) for k in ("prompt_ids", "response_ids", "response_mask", "logprobs", "turn_spans")}
        tokens["turn_spans"] = [tuple(s) for s in tokens["turn_spans"]]
        return cls(episode=Episode.model_validate(rec), **tokens)
