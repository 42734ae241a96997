"""The verl adapter against verl itself (run with `make test-verl`, in the verl environment).

- the overrides the launcher writes compose with verl's own ``ppo_trainer`` Hydra config, and the
  actor/rollout sections still build verl's config dataclasses;
- ``algorithm.adv_estimator=bao`` resolves through verl's registry and verl's own
  ``compute_advantage`` gives the single-node path's token advantages;
- the ``bao`` policy loss equals verl's ``vanilla`` loss (token mean, dual clip) on the same batch,
  including verl's global-token normalisation;
- `BaorlAgentLoop` plays a Function episode against a fake verl server: token ids in, token ids
  out, rm_scores = the shaped turn rewards on each turn's last token.

verl is imported inside the tests: baorl's main suite deselects this module (marker ``verl``).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from baorl.agents.base import tool_call_text
from baorl.config import build_config, save_config
from baorl.gyms import load_tasks
from baorl.models import load_tokenizer
from baorl.rollout.render import ChatRenderer
from baorl.train.config import BAOSection, TrainConfig
from baorl.train.verl.advantages import bao_token_advantages, episode_rewards, mask_spans
from baorl.train.verl.launch import verl_overrides

pytestmark = pytest.mark.verl


def _cfg(tmp_path: Path, **bao) -> TrainConfig:
    return build_config(TrainConfig, {
        "name": "verl-test", "output_dir": str(tmp_path / "run"), "model": {"chat_template": "chatml-tools"},
        "rollout": {"max_turns": 3, "max_response_tokens": 600, "max_new_tokens_per_turn": 64},
        "bao": bao, "train": {"tasks_per_step": 2, "rollouts_per_task": 4, "max_steps": 3},
    })


def _compose(overrides: list[str]):
    import verl.trainer
    from hydra import compose, initialize_config_dir

    cfg_dir = os.path.join(os.path.dirname(verl.trainer.__file__), "config")
    with initialize_config_dir(config_dir=cfg_dir, version_base=None):
        return compose(config_name="ppo_trainer", overrides=overrides)


def test_overrides_compose_with_verls_config(tmp_path: Path) -> None:
    from verl.utils.config import omega_conf_to_dataclass

    cfg = _cfg(tmp_path, score="mean", credit="equalized", penalties=False)
    c = _compose(verl_overrides(cfg, tmp_path / "run", n_train_tasks=4))
    assert c.algorithm.adv_estimator == "bao" and c.algorithm.bao.score == "mean"
    assert c.actor_rollout_ref.actor.policy_loss.loss_mode == "bao"
    assert c.actor_rollout_ref.rollout.agent.default_agent_loop == "baorl"
    assert c.data.train_batch_size == 2 and c.actor_rollout_ref.rollout.n == 4
    assert c.baorl.config == str(tmp_path / "run" / "config.yaml")
    actor = omega_conf_to_dataclass(c.actor_rollout_ref.actor)
    assert actor.clip_ratio_c == 3.0 and actor.policy_loss.loss_mode == "bao"
    rollout = omega_conf_to_dataclass(c.actor_rollout_ref.rollout)
    assert rollout.calculate_log_probs and rollout.response_length == 600


def test_registered_estimator_through_verls_compute_advantage(tmp_path: Path) -> None:
    from omegaconf import OmegaConf
    from tensordict import TensorDict
    from verl import DataProto
    from verl.trainer.ppo.core_algos import get_adv_estimator_fn
    from verl.trainer.ppo.ray_trainer import compute_advantage

    import baorl.train.verl.plugin  # noqa: F401  (verl also loads it through the entry point)

    assert get_adv_estimator_fn("bao").__name__ == "compute_bao_advantage"
    torch.manual_seed(0)
    mask = torch.tensor([[1, 1, 0, 0, 1, 1, 1, 0], [1, 0, 0, 1, 1, 0, 0, 0],
                         [1, 1, 1, 0, 0, 0, 0, 0], [1, 1, 0, 1, 0, 1, 1, 0]])
    rewards = torch.zeros(4, 8)
    for i in range(4):
        for _, end in mask_spans(mask[i]):
            rewards[i, end - 1] = float(torch.randn(()))
    uid = np.array(["a", "a", "b", "b"], dtype=object)
    algo = OmegaConf.create({"bao": {"score": "sum", "credit": "r2g", "gamma": 0.8, "eps": 1e-6}})
    data = DataProto(batch=TensorDict({"token_level_rewards": rewards, "response_mask": mask}, batch_size=4),
                     non_tensor_batch={"uid": uid})
    out = compute_advantage(data, adv_estimator="bao", config=algo)
    expected, _ = bao_token_advantages(rewards, mask, list(uid), score="sum", credit="r2g", gamma=0.8)
    assert torch.equal(out.batch["advantages"], expected) and expected.abs().sum() > 0
    with pytest.raises(ValueError, match="algorithm.bao"):
        compute_advantage(data, adv_estimator="bao", config=OmegaConf.create({}))


def test_bao_policy_loss_equals_verls_vanilla_loss(tmp_path: Path) -> None:
    from verl.trainer.ppo.core_algos import get_policy_loss_fn
    from verl.utils.config import omega_conf_to_dataclass

    import baorl.train.verl.plugin  # noqa: F401

    c = _compose(verl_overrides(_cfg(tmp_path), tmp_path / "run", n_train_tasks=4))
    actor = omega_conf_to_dataclass(c.actor_rollout_ref.actor)
    torch.manual_seed(1)
    old = -torch.rand(3, 10) * 2
    new = (old + torch.randn(3, 10) * 0.6).requires_grad_()
    adv = torch.randn(3, 10) * 2
    mask = (torch.rand(3, 10) > 0.3).long()
    for info in ({}, {"dp_size": 2, "batch_num_tokens": int(mask.sum()) * 3}):
        actor.global_batch_info.clear()
        actor.global_batch_info.update(info)
        ours, m = get_policy_loss_fn("bao")(old, new, adv, mask, "token-mean", actor)
        ref, rm = get_policy_loss_fn("vanilla")(old, new, adv, mask, "token-mean", actor)
        assert torch.allclose(ours, ref, atol=1e-6), (ours, ref)
        assert m["actor/pg_clipfrac"] == pytest.approx(rm["actor/pg_clipfrac"], abs=1e-6)
        assert m["actor/pg_clipfrac_lower"] == pytest.approx(rm["actor/pg_clipfrac_lower"], abs=1e-6)


class FakeServer:
    """verl's LLM server client: answers 0 every turn (wrong for the task played, so the episode runs
    to its turn limit with answer-after-answer penalties), with one extra token past the tool call."""

    def __init__(self, tok) -> None:
        self.ids = tok(tool_call_text("answer", "0", "guessing") + "<|im_end|>",
                       add_special_tokens=False)["input_ids"]
        self.contexts: list[list[int]] = []

    async def generate(self, *, request_id, prompt_ids, sampling_params, **_):
        from verl.workers.rollout.replica import TokenOutput

        self.contexts.append(list(prompt_ids))
        n = min(sampling_params["max_tokens"], len(self.ids))
        return TokenOutput(token_ids=self.ids[:n], log_probs=[-0.25] * n)


def test_agent_loop_plays_a_baorl_episode(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    from baorl.train.verl.agent_loop import BaorlAgentLoop

    cfg = _cfg(tmp_path)
    save_config(cfg, tmp_path / "config.yaml")
    tok = load_tokenizer("embedded")
    loop = BaorlAgentLoop.__new__(BaorlAgentLoop)  # verl's constructor needs a live cluster
    loop.config = OmegaConf.create({"baorl": {"config": str(tmp_path / "config.yaml")}})
    loop.tokenizer = tok
    loop.server_manager = server = FakeServer(tok)
    task = load_tasks("function")[0]
    out = asyncio.run(loop.run({"temperature": 1.0, "logprobs": True},
                               extra_info={"gym": "function", "task": task.model_dump_json(), "seed": 0},
                               raw_prompt=[{"role": "user", "content": "ignored"}]))
    d = out.as_dict()
    mask = d["response_mask"]
    spans = mask_spans(mask)
    assert len(spans) == 3 and len(server.contexts) == 3  # the turn limit
    # tokens kept as generated, up to the end of the tool call (the extra end token is dropped)
    assert d["responses"][spans[0][0]:spans[0][1]].tolist() == server.ids[:-1]
    assert server.contexts[1][: len(d["prompts"])] == d["prompts"].tolist()  # contexts grow, never re-tokenised
    renderer = ChatRenderer(tok, "chatml-tools")
    assert renderer.decode(d["prompts"].tolist()).startswith("<|im_start|>system")
    rm = d["rm_scores"]
    from baorl.records import Episode
    from baorl.rollout.trajectory import Trajectory

    traj = Trajectory(Episode.model_validate_json(out.extra_fields["baorl_episode"]), d["prompts"].tolist(),
                      d["responses"].tolist(), mask.tolist(), d["rollout_log_probs"].tolist(), spans)
    score, row = episode_rewards(traj, BAOSection(), max_turns=3)
    assert rm.tolist() == pytest.approx(row) and out.reward_score == pytest.approx(score)
    assert rm[spans[1][1] - 1] < 0  # the second answer is penalised
    assert "shaped_row" not in d


def test_agent_loop_refuses_verls_legacy_trainer(tmp_path: Path) -> None:
    from omegaconf import OmegaConf

    from baorl.train.verl.agent_loop import BaorlAgentLoop

    save_config(_cfg(tmp_path), tmp_path / "config.yaml")
    loop = BaorlAgentLoop.__new__(BaorlAgentLoop)
    loop.config = OmegaConf.create({"baorl": {"config": str(tmp_path / "config.yaml")},
                                    "trainer": {"use_v1": False}})
    loop.tokenizer = load_tokenizer("embedded")
    loop.server_manager = FakeServer(loop.tokenizer)
    task = load_tasks("function")[0]
    with pytest.raises(ValueError, match="legacy trainer"):
        asyncio.run(loop.run({"temperature": 1.0}, extra_info={"gym": "function", "task": task.model_dump_json()}))
