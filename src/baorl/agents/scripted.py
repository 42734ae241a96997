"""Simple scripted agents: a random valid-action baseline, a replay of fixed outputs, a person at the terminal."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from baorl.agents.base import Agent, tool_call_text

# a few well-formed contents per gym and choice; the random agent picks among them
_QUESTIONS = {
    "telepathy": ["Is it alive?", "Is it bigger than a person?", "Can you eat it?", "Is it man-made?",
                  "Is it found indoors?", "Does it have legs?", "Is it used for transport?"],
    "turtle": ["Did someone die?", "Was it an accident?", "Is the weather important?",
               "Did the person know the other person?", "Was money involved?", "Was anyone lying?"],
    "intention": ["What is the goal of this?", "Do you have a deadline?", "Who is the audience?",
                  "What format do you want?", "Is there a budget?", "Which tools do you use?"],
}
_ANSWERS = {
    "telepathy": ["a dog", "an apple", "a car", "a piano", "a chair"],
    "turtle": ["It was all a misunderstanding between the two people.",
               "The person was dreaming the whole time."],
    "intention": ["Please go ahead with sensible defaults."],
}


class RandomAgent(Agent):
    """Uniformly random *valid* calls: a floor every trained agent must beat.

    Function: probes four random integers in 1..10 (p = 0.7) or answers a random integer;
    other gyms: a random generic question (p = 0.75) or a random generic guess.
    """

    name = "scripted:random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed

    def start(self, system_prompt: str, task_prompt: str, info: dict[str, Any]) -> Any:
        return {"gym": info["gym"], "rng": random.Random(f"{self.seed}:{info['task_id']}")}

    def respond(self, observation: str, state: Any) -> tuple[str, Any]:
        rng: random.Random = state["rng"]
        gym = state["gym"]
        if gym == "function":
            if rng.random() < 0.7:
                return tool_call_text("action", " ".join(str(rng.randint(1, 10)) for _ in range(4)), "probe"), state
            return tool_call_text("answer", str(rng.randint(-100, 1000)), "guess"), state
        if rng.random() < 0.75:
            return tool_call_text("action", rng.choice(_QUESTIONS[gym]), "ask"), state
        return tool_call_text("answer", rng.choice(_ANSWERS[gym]), "guess"), state


class ReplayAgent(Agent):
    """Plays fixed outputs, one per turn (tests, and replaying a recorded episode's calls)."""

    name = "scripted:replay"

    def __init__(self, outputs: list[str]) -> None:
        self.outputs = list(outputs)

    def respond(self, observation: str, state: Any) -> tuple[str, Any]:
        state["history"].append(observation)
        return self.outputs[len(state["history"]) - 1], state


class HumanAgent(Agent):
    """A person at the terminal: types ``[choice] content`` (or ``[finish]``) each turn."""

    name = "human"

    def __init__(self, read: Callable[[str], str] = input, show: Callable[[str], None] = print) -> None:
        self.read, self.show = read, show

    def respond(self, observation: str, state: Any) -> tuple[str, Any]:
        self.show(observation)
        try:
            line = self.read("> ")
        except EOFError:
            line = "[finish]"
        return line, state
