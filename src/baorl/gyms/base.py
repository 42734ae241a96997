"""The gym contract (spec: gyms.md, "The shared contract").

A gym is a text environment with Gymnasium's API, played through one tool,
``interact_with_env(choice, content)``, which the gym receives as the string
``"[choice] content"``. One instance plays one episode at a time, on one task.

Subclasses define the task model, the prompts and `handle`; this base class does the parsing,
the bad-input feedback, the turn limit, `[finish]`, simulator failures and the info dict.
"""

from __future__ import annotations

import asyncio
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, SupportsFloat

import gymnasium
from pydantic import BaseModel, ConfigDict

from baorl.gyms.parser import ParsedAction, parse_action


class SimulatorError(RuntimeError):
    """A user simulator (or judge) could not produce a usable reply after its retries.

    Raised by the users (`baorl.users`); a gym turns it into a truncated step with
    ``termination="simulator_error"``.
    """


class Task(BaseModel):
    """A task record. Subclasses add the gym's fields; `id` is the stable id."""

    model_config = ConfigDict(extra="allow")
    id: str


@dataclass
class Outcome:
    """What a gym's `handle` returns for one well-formed call."""

    feedback: str
    reward: float = 0.0
    #: the task is solved: the episode terminates with termination "solved"
    solved: bool = False
    #: the agent ended the episode unsolved (a gym-specific stop): termination "finish"
    finished: bool = False
    info: dict[str, Any] = field(default_factory=dict)


class TaskDataError(ValueError):
    """A data file that cannot be loaded; the message names the file and the record."""


class Gym(gymnasium.Env[str, str]):
    """Base class of every baorl gym.

    ``reset(seed=None, options=None) -> (observation, info)``
        `observation` is the first user message (the task prompt). `info` holds ``system_prompt``,
        ``task_id``, ``gym``, ``max_turns`` and ``user_choices``.

    ``step(action) -> (observation, reward, terminated, truncated, info)``
        `action` is the agent's output: ``"[choice] content"``, Hermes ``<tool_call>`` text, or an
        OpenAI tool-call object. `observation` is the gym's feedback text (suffixed with the reward
        when ``reward_in_obs``); `reward` the step reward. `terminated` is True when the task is
        solved or the agent sent ``[finish]``; `truncated` when the turn limit is reached or the
        simulator failed. `info` has ``choice``, ``content``, ``valid``, ``user_involved``,
        ``feedback``, ``turn`` and, at the end, ``termination`` (``solved``, ``finish``,
        ``turn_limit`` or ``simulator_error``) — the episode record's field. Ground truth, when a gym
        exposes any, lives only in `info`.

    ``astep(action)`` is the same as a coroutine, for gyms whose step waits on a simulator.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    #: registry name ("function"); the versioned id is f"{name}-v{version}"
    name: ClassVar[str] = ""
    version: ClassVar[int] = 0
    #: the task model of this gym
    task_model: ClassVar[type[Task]] = Task
    #: choices whose call needs the user: U(tau) of the BAO objective
    user_choices: ClassVar[frozenset[str]] = frozenset({"answer"})
    #: choices this gym understands (others get a format hint)
    choices: ClassVar[tuple[str, ...]] = ("action", "search", "answer")
    #: the paper's turn limit T for this gym
    default_max_turns: ClassVar[int] = 15
    #: whether the gym needs a user simulator / judge
    needs_user: ClassVar[bool] = False

    def __init__(
        self,
        task: Task,
        *,
        user: Any = None,
        max_turns: int | None = None,
        reward_in_obs: bool = False,
    ) -> None:
        if not isinstance(task, self.task_model):
            task = self.task_model.model_validate(task)
        if self.needs_user and user is None:
            raise ValueError(
                f"gym {self.name!r} needs a user simulator: pass user='offline' (approximate, no network) "
                "or user='openai:MODEL' (an OpenAI-compatible endpoint)"
            )
        if max_turns is not None and max_turns < 1:
            raise ValueError(f"max_turns must be >= 1, got {max_turns}")
        self.task = task
        self.user = user
        self.max_turns = max_turns or self.default_max_turns
        self.reward_in_obs = reward_in_obs
        self.observation_space = gymnasium.spaces.Text(max_length=1 << 20, charset=string.printable)
        self.action_space = gymnasium.spaces.Text(max_length=1 << 20, charset=string.printable)
        self.turn = 0
        self.done = False

    # ---- what a gym defines -------------------------------------------------------------------
    def system_prompt(self) -> str:
        """The system prompt: the rules of the game and the content format of each choice."""
        raise NotImplementedError

    def task_prompt(self) -> str:
        """The first user message of an episode, built from the task record."""
        raise NotImplementedError

    def _reset_state(self) -> None:
        """Clear per-episode state (called by `reset`)."""

    async def handle(self, choice: str, content: str) -> Outcome:
        """Answer one well-formed call (`choice` in `self.choices`)."""
        raise NotImplementedError

    @classmethod
    def load_tasks(cls, path: str | Path) -> list[Task]:
        """Load UserRL's native data file for this gym."""
        raise NotImplementedError

    @classmethod
    def embedded_tasks(cls, split: str = "test") -> list[Task]:
        """The tasks baorl ships for this gym (raise if it ships none)."""
        raise TaskDataError(f"gym {cls.name!r} ships no embedded tasks; pass data=PATH to a UserRL data file")

    # ---- the contract ---------------------------------------------------------------------------
    @property
    def simulator_label(self) -> str:
        return getattr(self.user, "label", "none") if self.user is not None else "none"

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        self.turn = 0
        self.done = False
        self._reset_state()
        info = {
            "gym": self.name,
            "task_id": self.task.id,
            "system_prompt": self.system_prompt(),
            "max_turns": self.max_turns,
            "user_choices": sorted(self.user_choices),
            "simulator": self.simulator_label,
        }
        return self.task_prompt(), info

    def step(self, action: Any) -> tuple[str, SupportsFloat, bool, bool, dict[str, Any]]:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.astep(action))
        raise RuntimeError("step() called inside a running event loop; use `await gym.astep(action)`")

    async def astep(self, action: Any) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self.done:
            raise RuntimeError("episode is over; call reset() before stepping again")
        parsed = action if isinstance(action, ParsedAction) else parse_action(action)
        self.turn += 1
        info: dict[str, Any] = {"turn": self.turn, "choice": parsed.choice, "content": parsed.content}
        terminated = truncated = False
        reward = 0.0

        if parsed.choice == "finish":
            feedback, terminated = "Episode finished at the agent's request.", True
            info.update(choice=None, termination="finish", valid=True)
        elif parsed.choice is None or parsed.choice not in self.choices:
            why = parsed.error or f"this game does not use the choice {parsed.choice!r}"
            feedback = f"Invalid action ({why}). {self.format_hint()}"
            info.update(choice=None, valid=False)
        elif not parsed.content.strip():
            feedback = f"Empty content for '{parsed.choice}'. {self.format_hint()}"
            info.update(valid=False)
        else:
            info["valid"] = True
            try:
                out = await self.handle(parsed.choice, parsed.content)
            except SimulatorError as e:
                feedback = "The user could not respond; the episode was stopped (simulator error)."
                truncated = True
                info.update(termination="simulator_error", simulator_error=str(e))
            else:
                feedback, reward = out.feedback, float(out.reward)
                info.update(out.info)
                if out.solved or out.finished:
                    terminated = True
                    info["termination"] = "solved" if out.solved else "finish"

        info["user_involved"] = bool(info.get("valid")) and info.get("choice") in self.user_choices
        if not (terminated or truncated) and self.turn >= self.max_turns:
            truncated = True
            info["termination"] = "turn_limit"
        self.done = terminated or truncated
        info["feedback"] = feedback
        obs = f"{feedback}\nReward: {reward:g}" if self.reward_in_obs else feedback
        return obs, reward, terminated, truncated, info

    def format_hint(self) -> str:
        """One line telling the agent the expected call format (used in bad-input feedback)."""
        return (
            "Call the tool interact_with_env with choice one of "
            + ", ".join(f"'{c}'" for c in self.choices)
            + " and a non-empty content, as the instructions describe."
        )
