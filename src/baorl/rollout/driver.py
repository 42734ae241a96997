"""Play token-exact episodes with any token-in/token-out generator (vLLM, verl's server pool).

The local engine (`baorl.rollout.engine`) owns its KV cache and samples token by token. Serving
engines instead take a context of token ids and return a whole generation. This module drives
`TokenEpisode` with such a generator, so the records are the same as the engine's:

- `aplay_tokens(gym, generate, ...)` plays one episode; ``await generate(ids, max_new)`` returns
  the sampled ids and their log-probabilities (verl's agent loop: one coroutine per episode).
- `aplay_batch(gyms, generate_batch, ...)` plays many in lock-step: each turn, one call
  ``generate_batch([ids...], [max_new...])`` for every live episode (vLLM's ``LLM.generate``
  batches them), then all gym steps concurrently.

A generation is cut at its first stop (end token, stop string, budget, turn cap) exactly as the
engine stops: tokens a server produced past that point are dropped, never shown to the gym, and
the next context is the kept ids plus the observation segment, so nothing is re-tokenised.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from baorl.gyms.base import Gym
from baorl.rollout.episode import Limits, StopRule, TokenEpisode, step_gym
from baorl.rollout.render import ChatRenderer
from baorl.rollout.trajectory import Trajectory

__all__ = ["Generate", "GenerateBatch", "aplay_tokens", "aplay_batch", "take_generation"]

#: (context ids, most new tokens) -> (sampled ids, their log-probabilities)
Generate = Callable[[list[int], int], Awaitable[tuple[list[int], list[float]]]]
#: the same for many contexts at once
GenerateBatch = Callable[[list[list[int]], list[int]], Awaitable[list[tuple[list[int], list[float]]]]]


def take_generation(ep: TokenEpisode, tokens: Sequence[int], logprobs: Sequence[float] | None,
                    rule: StopRule, limits: Limits) -> str:
    """Append `tokens` to `ep` up to the first stop and return why the turn stopped.

    A generation that ends with no stop of ours (the server stopped on its own rule) is a
    ``stop``; an empty one too (the turn then has no tool call).
    """
    if logprobs is not None and len(logprobs) != len(tokens):
        raise ValueError(f"generator returned {len(tokens)} tokens but {len(logprobs)} log-probabilities")
    for k, tok in enumerate(tokens):
        ep.add(int(tok), 0.0 if logprobs is None else float(logprobs[k]))
        reason = ep.stop_reason(rule, limits)
        if reason is not None:
            return reason
    return "stop"


async def aplay_tokens(gym: Gym, generate: Generate, renderer: ChatRenderer, rule: StopRule, limits: Limits, *,
                       seed: int = 0, policy: str = "policy", step_timeout_s: float | None = None) -> Trajectory:
    """Play one episode of `gym` with `generate`; returns its `Trajectory`."""
    ep = TokenEpisode.start(gym, renderer, limits, seed=seed)
    if "prompt_too_long" in ep.meta:
        return ep.finish("token_budget", policy=policy, error=ep.meta.pop("prompt_too_long"))
    while True:
        tokens, logprobs = await generate(list(ep.ids), ep.room(limits))
        parsed = ep.end_turn(take_generation(ep, tokens, logprobs, rule, limits), rule, policy=policy)
        if parsed is None:
            return ep.result
        step = await step_gym(gym, parsed, step_timeout_s)
        if not ep.after_step(step, renderer, limits, policy=policy):
            return ep.result


async def aplay_batch(gyms: Sequence[Gym], generate_batch: GenerateBatch, renderer: ChatRenderer, rule: StopRule,
                      limits: Limits, *, seeds: Sequence[int] | None = None, policy: str = "policy",
                      step_timeout_s: float | None = None) -> list[Trajectory]:
    """Play one episode per gym in lock-step turns; returns the trajectories in the order of `gyms`."""
    if seeds is not None and len(seeds) != len(gyms):
        raise ValueError(f"got {len(seeds)} seeds for {len(gyms)} gyms; pass one seed per gym")
    eps = [TokenEpisode.start(g, renderer, limits, seed=0 if seeds is None else int(seeds[i]))
           for i, g in enumerate(gyms)]
    for ep in eps:
        if "prompt_too_long" in ep.meta:
            ep.finish("token_budget", policy=policy, error=ep.meta.pop("prompt_too_long"))
    live = [ep for ep in eps if not ep.done]
    while live:
        outs = await generate_batch([list(ep.ids) for ep in live], [ep.room(limits) for ep in live])
        if len(outs) != len(live):
            raise ValueError(f"generator returned {len(outs)} generations for {len(live)} contexts")
        acting = []
        for ep, (tokens, logprobs) in zip(live, outs, strict=True):
            parsed = ep.end_turn(take_generation(ep, tokens, logprobs, rule, limits), rule, policy=policy)
            if parsed is not None:
                acting.append((ep, parsed))
        steps = await asyncio.gather(*(step_gym(ep.gym, parsed, step_timeout_s) for ep, parsed in acting))
        live = [ep for (ep, _), step in zip(acting, steps, strict=True)
                if ep.after_step(step, renderer, limits, policy=policy)]
    return [ep.result for ep in eps]
