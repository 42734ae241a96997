"""verl agent loop that plays one baorl episode per sample (needs the ``verl`` extra).

verl instantiates `BaorlAgentLoop` for each sample of a rollout batch (named ``baorl`` in the
agent-loop config the launcher writes) and awaits `run`. The loop:

1. rebuilds the sample's gym from the dataset row (``extra_info``: gym name and task JSON, written
   by `baorl.train.verl.launch`) with the run's user simulator;
2. plays it with `baorl.rollout.driver.aplay_tokens`, generating through verl's LLM server pool
   (``server_manager.generate``, token ids in and out, sampled log-probabilities back), so the
   policy's tokens are never re-tokenised and observations are rendered by the same
   `ChatRenderer` as the TRL path;
3. scores it with `baorl.train.episodes.score_episode` (`baorl.bao.shape_rewards`, the trajectory
   score) and returns a `BaorlAgentLoopOutput` whose ``rm_scores`` hold each turn's shaped reward
   on the turn's last token, for the ``bao`` advantage estimator.

The run's baorl config is read from the YAML path at ``baorl.config`` in verl's configuration
(the launcher sets it; on a cluster it must be on a filesystem every node sees).
"""

from __future__ import annotations

import time
from typing import Any
from uuid import uuid4

import torch
from verl.experimental.agent_loop.agent_loop import AgentLoopBase, AgentLoopMetrics, AgentLoopOutput

from baorl.config import load_config
from baorl.gyms import gym_class
from baorl.rollout.driver import aplay_tokens
from baorl.rollout.episode import Limits, StopRule, eos_ids
from baorl.rollout.render import ChatRenderer
from baorl.train.config import TrainConfig
from baorl.train.verl.advantages import episode_rewards

__all__ = ["BaorlAgentLoop", "BaorlAgentLoopOutput"]


class BaorlAgentLoopOutput(AgentLoopOutput):
    """verl's output plus the per-token shaped rewards, which replace the single final-token reward."""

    shaped_row: list[float] = []
    """(response length,) each turn's shaped reward on its last token."""

    def as_dict(self) -> dict[str, Any]:
        out = super().as_dict()
        out.pop("shaped_row", None)
        out["rm_scores"] = torch.tensor(self.shaped_row, dtype=torch.float32)
        return out


_Setup = tuple[TrainConfig, ChatRenderer, StopRule, Limits, Any]
_SETUPS: dict[tuple[str, int], _Setup] = {}


def _setup(config_path: str, tokenizer: Any) -> _Setup:
    """The run config, renderer, stop rule, limits and user simulator (built once per process and
    tokenizer; the simulator is shared by the process's episodes, as in the TRL path)."""
    key = (config_path, id(tokenizer))
    if key not in _SETUPS:
        _SETUPS[key] = _build_setup(config_path, tokenizer)
    return _SETUPS[key]


def _build_setup(config_path: str, tokenizer: Any) -> _Setup:
    from baorl.train.tasks import make_user_for

    cfg = load_config(TrainConfig, config_path)
    renderer = ChatRenderer(tokenizer, cfg.model.chat_template, template_kwargs=cfg.model.template_kwargs)
    rule = StopRule(renderer, eos_ids(tokenizer), ["</tool_call>"])
    return cfg, renderer, rule, Limits.of(cfg.rollout), make_user_for(cfg)


class BaorlAgentLoop(AgentLoopBase):
    """One baorl episode per verl sample (see the module docstring)."""

    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> AgentLoopOutput:
        path = self.config.get("baorl", {}).get("config")
        if not path:
            raise ValueError("verl config has no baorl.config (the baorl run config's path); launch with "
                             "`baorl train CONFIG --engine verl`")
        if not self.config.get("trainer", {}).get("use_v1", True):
            from baorl.train.verl.launch import LEGACY_TRAINER

            raise ValueError(LEGACY_TRAINER)
        cfg, renderer, rule, limits, user = _setup(str(path), self.tokenizer)
        info = kwargs.get("extra_info") or {}
        if "gym" not in info or "task" not in info:
            raise ValueError("dataset row has no extra_info.gym / extra_info.task; write the data with "
                             "baorl.train.verl.launch.write_dataset")
        cls = gym_class(info["gym"])
        gym = cls(cls.task_model.model_validate_json(info["task"]), user=user)

        request_id = uuid4().hex
        timing = {"generate": 0.0}

        async def generate(ids: list[int], max_new: int) -> tuple[list[int], list[float]]:
            t0 = time.perf_counter()
            params = {**sampling_params, "max_tokens": max_new}
            out = await self.server_manager.generate(request_id=request_id, prompt_ids=ids, sampling_params=params)
            timing["generate"] += time.perf_counter() - t0
            if out.log_probs is None:
                raise RuntimeError("verl's rollout server returned no log-probabilities; set "
                                   "actor_rollout_ref.rollout.calculate_log_probs=True")
            return list(out.token_ids), list(out.log_probs)

        t0 = time.perf_counter()
        traj = await aplay_tokens(gym, generate, renderer, rule, limits, seed=int(info.get("seed", 0)),
                                  policy=f"verl:{cfg.model.path}")
        score, row = episode_rewards(traj, cfg.bao, max_turns=cfg.rollout.max_turns)
        mask = list(traj.response_mask)
        if traj.episode.termination == "simulator_error":
            # not the agent's failure (bao.md §3): no token of it is trained on, and with an empty
            # mask the ``bao`` estimator keeps it out of its group's mean and std
            mask, row = [0] * len(mask), [0.0] * len(row)
        # an episode whose prompt was over budget has no turns; keep verl's prompt width
        prompt_ids = traj.prompt_ids if traj.turn_spans else traj.prompt_ids[-limits.max_prompt_tokens:]
        return BaorlAgentLoopOutput(
            prompt_ids=prompt_ids,
            response_ids=traj.response_ids,
            response_mask=mask,
            response_logprobs=traj.logprobs,
            reward_score=score,
            shaped_row=row,
            num_turns=2 * len(traj.episode.turns) + 1,
            metrics=AgentLoopMetrics(generate_sequences=timing["generate"],
                                     tool_calls=time.perf_counter() - t0 - timing["generate"]),
            extra_fields={"baorl_episode": traj.episode.model_dump_json(), "turn_scores": traj.turn_rewards,
                          "tool_rewards": []},
        )
