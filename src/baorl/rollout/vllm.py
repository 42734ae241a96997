"""vLLM rollouts on GPU, with the engine's records (the ``gpu`` extra).

`VLLMRollout` has the `RolloutEngine` interface (``run(gyms, seeds=, sample_seed=)``, ``stats``)
and plays episodes with `baorl.rollout.driver.aplay_batch`: every turn, one ``LLM.generate`` call
over all live episodes' token-id contexts (vLLM batches them), then all gym steps. The policy's
tokens come back from vLLM as ids with their log-probabilities and are kept as sampled; the
driver cuts each generation at baorl's stop rules and appends observation tokens itself.

Two ways to build one:

- `VLLMRollout.from_llm(llm, tokenizer, config)`: any ``vllm.LLM`` (create it with
  ``logprobs_mode="processed_logprobs"`` so the recorded log-probabilities are those of the
  temperature-scaled distribution the tokens were drawn from, as the engine records);
- `VLLMRollout.from_trl(trainer, tokenizer, config)`: the colocated ``vllm.LLM`` that TRL's
  ``GRPOTrainer`` keeps in sync with the policy (``use_vllm=True, vllm_mode="colocate"``; TRL
  creates it with processed log-probabilities).

Tested against a stand-in with vLLM's output structure (tests/test_driver.py); not run on a GPU
in this repository's CI.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

from baorl.gyms.base import Gym
from baorl.rollout.driver import aplay_batch
from baorl.rollout.engine import EngineConfig
from baorl.rollout.episode import Limits, StopRule, eos_ids
from baorl.rollout.render import ChatRenderer
from baorl.rollout.trajectory import Trajectory

__all__ = ["VLLMRollout", "vllm_outputs_to_tokens"]


def vllm_outputs_to_tokens(outputs: Sequence[Any]) -> list[tuple[list[int], list[float]]]:
    """``(token ids, log-probabilities)`` of each request's first completion from ``LLM.generate``.

    vLLM gives ``completion.logprobs`` as one ``{token_id: Logprob}`` dict per generated token
    (with ``logprobs=0``: the sampled token only).
    """
    out = []
    for req in outputs:
        comp = req.outputs[0]
        ids = list(comp.token_ids)
        if comp.logprobs is None:
            raise ValueError("vLLM returned no log-probabilities; generate with SamplingParams(logprobs=0)")
        out.append((ids, [float(step[t].logprob) for t, step in zip(ids, comp.logprobs, strict=True)]))
    return out


class VLLMRollout:
    """Multi-turn rollouts through a vLLM ``LLM`` (see the module docstring).

    Args:
        llm: a ``vllm.LLM`` (or anything with its ``generate(prompts, sampling_params, use_tqdm)``).
        tokenizer: the policy's tokenizer (chat template, observations, stop rules).
        config: the same `EngineConfig` as the local engine (``batch_size`` is vLLM's business).
        name: the policy name in the records.
        sampling_params_cls: vLLM's ``SamplingParams`` (injectable for tests).
    """

    def __init__(self, llm: Any, tokenizer: Any, config: EngineConfig | None = None, *, name: str = "vllm",
                 sampling_params_cls: Any = None) -> None:
        if sampling_params_cls is None:
            from vllm import SamplingParams as sampling_params_cls
        self.llm, self.tokenizer, self.name = llm, tokenizer, name
        self.config = config or EngineConfig()
        self.SamplingParams = sampling_params_cls
        self.renderer = ChatRenderer(tokenizer, self.config.chat_template, template_kwargs=self.config.template_kwargs)
        self.rule = StopRule(self.renderer, eos_ids(tokenizer), self.config.stop_strings)
        self.limits = Limits.of(self.config)
        self._calls = 0
        self.stats: dict[str, float] = {}

    @classmethod
    def from_llm(cls, llm: Any, tokenizer: Any, config: EngineConfig | None = None, **kw: Any) -> VLLMRollout:
        return cls(llm, tokenizer, config, **kw)

    @classmethod
    def from_trl(cls, trainer: Any, tokenizer: Any, config: EngineConfig | None = None, **kw: Any) -> VLLMRollout:
        vg = getattr(trainer, "vllm_generation", None)
        if vg is None or getattr(vg, "mode", None) != "colocate" or getattr(vg, "llm", None) is None:
            raise ValueError("rollout.backend vllm needs TRL's colocated vLLM (use_vllm=True, vllm_mode='colocate'); "
                             "server mode gathers prompts across processes every call, which multi-turn episodes "
                             "ending at different turns would deadlock")
        if getattr(vg, "tensor_parallel_size", 1) > 1:
            raise ValueError("rollout.backend vllm: tensor parallelism > 1 is not supported for multi-turn rollouts")
        return cls(vg.llm, tokenizer, config, **kw)

    def run(self, gyms: Sequence[Gym], *, seeds: Sequence[int] | None = None,
            sample_seed: int | None = None) -> list[Trajectory]:
        """Play one episode per gym (as `RolloutEngine.run`)."""
        cfg = self.config
        base = sample_seed if sample_seed is not None else cfg.seed * 1_000_003 + self._calls
        self._calls += 1
        stats = {"generated": 0, "calls": 0, "generate_s": 0.0}

        async def generate_batch(contexts: list[list[int]], max_new: list[int]):
            params = [self.SamplingParams(
                n=1, max_tokens=m, temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k or -1,
                logprobs=0, seed=(base * 1_000_003 + stats["calls"] * 65_537 + i) % (1 << 31),
            ) for i, m in enumerate(max_new)]
            t0 = time.perf_counter()
            outs = self.llm.generate([{"prompt_token_ids": c} for c in contexts], sampling_params=params,
                                     use_tqdm=False)
            stats["generate_s"] += time.perf_counter() - t0
            stats["calls"] += 1
            toks = vllm_outputs_to_tokens(outs)
            stats["generated"] += sum(len(t) for t, _ in toks)
            return toks

        t0 = time.perf_counter()
        trajs = asyncio.run(aplay_batch(
            gyms, generate_batch, self.renderer, self.rule, self.limits,
            seeds=seeds if seeds is not None else [cfg.seed] * len(gyms), policy=self.name,
            step_timeout_s=cfg.step_timeout_s))
        stats["wall_s"] = time.perf_counter() - t0
        stats["kept"] = sum(sum(t.response_mask) for t in trajs)
        self.stats = stats
        return trajs
