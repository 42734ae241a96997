"""One episode's token bookkeeping, shared by every generation backend.

`TokenEpisode` is what the rollout engine (`baorl.rollout.engine`, local transformers), the
generic driver (`baorl.rollout.driver`, vLLM or any token-in/token-out server) and verl's agent
loop (`baorl.train.verl`) do between generations, so the three record the same thing:

1. `TokenEpisode.start` resets the gym and tokenises the rendered prompt;
2. the backend appends each sampled token with `add` (mask 1, its log-probability) and asks
   `stop_reason` after each one; when a turn stops, `end_turn` parses it and returns the action
   for the gym (or ends the episode: no tool call, budget spent);
3. `after_step` records the gym's answer and appends the observation segment (mask 0), or ends
   the episode.

The policy's tokens are kept exactly as sampled; only prompts and observations are tokenised.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from baorl.gyms.base import Gym
from baorl.gyms.parser import ParsedAction, parse_action
from baorl.records import Episode, Turn
from baorl.rollout.render import ChatRenderer
from baorl.rollout.trajectory import Trajectory

__all__ = ["EpisodeLimits", "Limits", "StopRule", "TokenEpisode", "eos_ids", "step_gym"]

log = logging.getLogger(__name__)


class EpisodeLimits(BaseModel):
    """Per-episode limits and gym overrides, defined once: `EngineConfig` and a train config's
    ``rollout`` section inherit these fields, the `hf:` command-line options take their defaults from
    here, and `Limits.of` resolves them for the backends."""

    model_config = ConfigDict(extra="forbid")

    max_turns: int | None = Field(None, ge=1, description="turn limit per episode; None keeps each gym's own (T)")
    max_prompt_tokens: int = Field(1152, ge=1, description="longest initial prompt; longer ones end at once")
    max_response_tokens: int = Field(
        7000, ge=1, description="tokens after the prompt per episode (policy and observations): the budget")
    max_new_tokens_per_turn: int | None = Field(
        512, ge=1, description="most tokens one generation may take (None: a turn is bounded only by what is "
        "left of the response budget, as in the official rollout)")
    trailing_generation: bool = Field(
        False, description="after the turn limit, generate once more without executing the call and train on "
        "that turn (the official rollout's 16th generation, an off-by-one; off by default)")
    reward_in_obs: bool | None = Field(None, description="suffix observations with the step reward; None keeps the gym's")


@dataclass(frozen=True)
class Limits:
    """`EpisodeLimits` resolved for play: ``max_new_tokens_per_turn`` is always a number (``None``
    keeps the gym's own turn limit / reward display)."""

    max_prompt_tokens: int = EpisodeLimits.model_fields["max_prompt_tokens"].default
    max_response_tokens: int = EpisodeLimits.model_fields["max_response_tokens"].default
    max_new_tokens_per_turn: int = EpisodeLimits.model_fields["max_new_tokens_per_turn"].default
    max_turns: int | None = None
    reward_in_obs: bool | None = None
    #: after the turn limit, generate once more without executing the call (the official rollout's
    #: 16th generation; see `TokenEpisode.after_step`)
    trailing_generation: bool = False

    @classmethod
    def of(cls, cfg: EpisodeLimits) -> Limits:
        """The limits of an `EpisodeLimits` (`EngineConfig`, `RolloutSection`)."""
        per_turn = cfg.max_new_tokens_per_turn or cfg.max_response_tokens  # None: only the budget bounds a turn
        return cls(cfg.max_prompt_tokens, cfg.max_response_tokens, per_turn, cfg.max_turns, cfg.reward_in_obs,
                   cfg.trailing_generation)


#: the feedback recorded for a generation made after the turn limit (``Limits.trailing_generation``)
TRAILING_FEEDBACK = "not executed: the turn limit was reached"


def eos_ids(tokenizer: Any, model: Any = None) -> set[int]:
    """End-of-sequence ids of the tokenizer and, when given, of the model's generation config."""
    ids: set[int] = set()
    for src in (getattr(model, "generation_config", None), tokenizer):
        eos = getattr(src, "eos_token_id", None)
        ids.update([eos] if isinstance(eos, int) else (eos or []))
    return ids


class StopRule:
    """When a generation stops: an end token, a stop string in the turn's tail, or a length limit.

    Args:
        renderer: the conversation's `ChatRenderer` (its end-of-turn token is a stop token).
        stop_ids: end-of-sequence ids (the model's and the tokenizer's).
        stop_strings: a turn ends once its text contains one of these (``</tool_call>``).
    """

    def __init__(self, renderer: ChatRenderer, stop_ids: set[int], stop_strings: list[str]) -> None:
        self.renderer = renderer
        self.stop_ids = set(stop_ids)
        if renderer.eot_id is not None:
            self.stop_ids.add(renderer.eot_id)
        self.stop_strings = list(stop_strings)
        tok = renderer.tokenizer
        texts = tok.batch_decode([[i] for i in range(len(tok))], skip_special_tokens=False,
                                 clean_up_tokenization_spaces=False)
        tails = {s[-1] for s in self.stop_strings if s}
        #: token ids whose text could complete a stop string (only these trigger the tail check)
        self.may_stop = {i for i, t in enumerate(texts) if any(ch in t for ch in tails)}


@dataclass
class TokenEpisode:
    """The tokens, masks and turns of one episode in play (see the module docstring)."""

    gym: Gym
    seed: int
    prompt_len: int
    ids: list[int]                     # prompt + response so far
    mask: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    spans: list[tuple[int, int]] = field(default_factory=list)
    turns: list[Turn] = field(default_factory=list)
    turn_start: int = 0
    parsed: ParsedAction | None = None
    ended_turn: bool = False           # the policy emitted the end-of-turn token itself
    trailing: bool = False             # the turn limit was reached: this generation is not executed
    meta: dict[str, Any] = field(default_factory=dict)  # the current turn's token counts
    result: Trajectory | None = None

    @classmethod
    def start(cls, gym: Gym, renderer: ChatRenderer, limits: Limits, *, seed: int, **kw: Any) -> TokenEpisode:
        """Apply the limits' gym overrides, reset `gym` and tokenise its prompt; a prompt over
        ``max_prompt_tokens`` leaves the episode unstarted (``prompt_too_long`` is the message; call
        `finish` with ``token_budget``)."""
        if limits.max_turns is not None:
            gym.max_turns = limits.max_turns
        if limits.reward_in_obs is not None:
            gym.reward_in_obs = limits.reward_in_obs
        task_prompt, info = gym.reset(seed=seed)
        ids = renderer.encode(renderer.prompt_text(info["system_prompt"], task_prompt))
        ep = cls(gym=gym, seed=seed, prompt_len=len(ids), ids=ids, turn_start=len(ids), **kw)
        if len(ids) > limits.max_prompt_tokens:
            ep.meta["prompt_too_long"] = f"prompt has {len(ids)} tokens > max_prompt_tokens={limits.max_prompt_tokens}"
        return ep

    @property
    def response_len(self) -> int:
        return len(self.ids) - self.prompt_len

    @property
    def done(self) -> bool:
        return self.result is not None

    def room(self, limits: Limits) -> int:
        """Tokens the current turn may still generate (per-turn cap and episode budget)."""
        return min(limits.max_new_tokens_per_turn - (len(self.ids) - self.turn_start),
                   limits.max_response_tokens - self.response_len)

    # ---- generation ---------------------------------------------------------------------------------
    def add(self, token: int, logprob: float) -> None:
        """Append one sampled token (loss mask 1)."""
        self.ids.append(token)
        self.mask.append(1)
        self.logprobs.append(float(logprob))

    def stop_reason(self, rule: StopRule, limits: Limits) -> str | None:
        """Why the turn stops after its last token, or None: ``stop`` (an end token), ``tool_call``
        (a stop string), ``budget`` (the episode's response budget) or ``length`` (the turn cap)."""
        tok = self.ids[-1]
        if tok in rule.stop_ids:
            return "stop"
        if tok in rule.may_stop:
            tail = rule.renderer.decode(self.ids[max(self.turn_start, len(self.ids) - 24):])
            if any(s in tail for s in rule.stop_strings):
                return "tool_call"
        if self.response_len >= limits.max_response_tokens:
            return "budget"
        if len(self.ids) - self.turn_start >= limits.max_new_tokens_per_turn:
            return "length"
        return None

    def end_turn(self, reason: str, rule: StopRule, *, policy: str) -> ParsedAction | None:
        """Close the current turn: record its span, parse it; returns the action for the gym, or
        None when the episode ended (``token_budget`` or ``no_tool_call``)."""
        self.spans.append((self.turn_start - self.prompt_len, len(self.ids) - self.prompt_len))
        ids = self.ids[self.turn_start:]
        self.ended_turn = bool(ids) and ids[-1] == rule.renderer.eot_id
        if ids and ids[-1] in rule.stop_ids:
            ids = ids[:-1]  # the end token is not part of the message's text
        parsed = parse_action(rule.renderer.decode(ids))
        meta = {"prompt_tokens": self.turn_start, "completion_tokens": len(self.ids) - self.turn_start,
                "stop_reason": reason}
        if self.trailing:  # generated after the turn limit: recorded (reward 0), never executed
            self.turns.append(Turn(choice=None, think=parsed.think, feedback=TRAILING_FEEDBACK, **meta))
            self.finish("turn_limit", policy=policy)
            return None
        if reason == "budget":
            self.turns.append(Turn(choice=None, think=parsed.think, feedback="token budget exhausted", **meta))
            self.finish("token_budget", policy=policy)
            return None
        if parsed.choice is None:
            self.turns.append(Turn(choice=None, think=parsed.think, feedback=parsed.error or "", **meta))
            self.finish("no_tool_call", policy=policy)
            return None
        self.parsed, self.meta = parsed, meta
        return parsed

    def after_step(self, step: tuple, renderer: ChatRenderer, limits: Limits, *, policy: str) -> bool:
        """Record the gym's answer `step` = ``(obs, reward, terminated, truncated, info)``; append
        the observation segment and return True when the episode goes on."""
        obs, reward, terminated, truncated, info = step
        self.turns.append(Turn(
            choice=info["choice"] if info.get("valid") else None, content=info.get("content", ""),
            reward=float(reward), feedback=info.get("feedback", obs), user_involved=bool(info.get("user_involved")),
            think=self.parsed.think if self.parsed is not None else "", **self.meta,
        ))
        termination = info.get("termination", "turn_limit")
        if truncated and not terminated and termination == "turn_limit" and limits.trailing_generation:
            # the official rollout's off-by-one: after the T-th executed call the policy generates once
            # more; that call is never executed, but the turn is trained on (reward 0)
            self.trailing = True
        elif terminated or truncated:
            extra = ({"simulator_error": info.get("simulator_error") or info.get("feedback", obs)}
                     if termination == "simulator_error" else {})
            self.finish(termination, policy=policy, success=termination == "solved", **extra)
            return False
        seg = renderer.encode(renderer.observation_text(obs, policy_ended_turn=self.ended_turn))
        if len(seg) >= limits.max_response_tokens - self.response_len:
            self.finish("token_budget", policy=policy)  # no room for the observation and one more token
            return False
        self.ids += seg
        self.mask += [0] * len(seg)
        self.logprobs += [0.0] * len(seg)
        self.turn_start = len(self.ids)
        return True

    def finish(self, termination: str, *, policy: str, success: bool = False, **extra: Any) -> Trajectory:
        """End the episode and build its `Trajectory` (record + tokens)."""
        gym = self.gym
        episode = Episode.from_turns(
            turns=self.turns, gym=gym.name, task_id=gym.task.id, policy=policy, seed=self.seed,
            success=success, termination=termination, simulator=gym.simulator_label,
            simulator_detail=getattr(gym.user, "detail", "") if gym.user is not None else "", **extra,
        )
        p = self.prompt_len
        self.result = Trajectory(episode, self.ids[:p], self.ids[p:], self.mask, self.logprobs, self.spans)
        return self.result


async def step_gym(gym: Gym, parsed: ParsedAction, timeout_s: float | None = None) -> tuple:
    """``gym.astep(parsed)``; a step slower than `timeout_s` ends the episode as ``simulator_error``."""
    if timeout_s is None:
        return await gym.astep(parsed)
    try:
        return await asyncio.wait_for(gym.astep(parsed), timeout_s)
    except asyncio.TimeoutError:
        fb = f"The environment did not answer within {timeout_s:g} s (simulator error)."
        return fb, 0.0, False, True, {"choice": parsed.choice, "content": parsed.content, "valid": True,
                                      "user_involved": False, "feedback": fb, "termination": "simulator_error"}
