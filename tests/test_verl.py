"""The verl adapter's engine-neutral parts: parity with the TRL path, the launcher's files and overrides.

These run in baorl's own environment (no verl import). What needs verl itself (the registered
estimator and loss, the agent loop against a fake server, the overrides composed by verl's own
Hydra config) is in tests/test_verl_plugin.py and runs with `make test-verl`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from datasets import Dataset
from trajectories import traj

from baorl.config import build_config
from baorl.gyms import load_tasks
from baorl.train.config import BAOSection, TrainConfig
from baorl.train.episodes import advantage_rows, batch_advantages, score_episode
from baorl.train.verl.advantages import bao_token_advantages, episode_rewards, mask_spans, shaped_reward_row
from baorl.train.verl.launch import verl_overrides, write_dataset

# two groups of four rollouts: answer-after-answer, user actions, one-turn, identical scores,
# an episode with no turns (prompt over budget), a simulator error, different lengths
GROUPS = [
    [traj([("search", 0.0, 4), ("action", 0.0, 2), ("answer", 1.0, 3)], termination="solved"),
     traj([("answer", 0.0, 5), ("answer", 0.0, 2), ("answer", 1.0, 1)], termination="solved"),
     traj([("action", 0.0, 6), ("action", 0.0, 6), ("search", 0.0, 2), ("answer", 0.0, 2)]),
     traj([("action", 0.0, 3), ("answer", 0.0, 2)], termination="simulator_error")],
    [traj([("answer", 1.0, 3)], termination="solved", task="u"),
     traj([("answer", 1.0, 3)], termination="solved", task="u"),
     traj([("search", 0.0, 2), ("answer", 0.0, 2)], task="u", termination="no_tool_call"),
     traj([], termination="token_budget", task="u")],
]
BATCH = [t for g in GROUPS for t in g]
PRESETS = {
    "bao": {},
    "userrl": {"score": "mean", "credit": "equalized", "penalties": False},
    "em-r2g-effort": {"score": "r2g", "credit": "em", "effort_cost": 0.1, "c_rep": 0.2, "c_len": 0.1},
}


def trl_path(bao: BAOSection, width: int) -> torch.Tensor:
    """What `BAOTrainer` computes for the batch (episodes.py)."""
    scored = [score_episode(t, bao) for t in BATCH]
    adv = batch_advantages([e.score for e in scored], 4, eps=bao.eps, trained=[e.trained for e in scored])
    for e, a in zip(scored, adv, strict=True):
        e.advantage = a
    return advantage_rows(scored, width)


def verl_path(bao: BAOSection, width: int) -> torch.Tensor:
    """What verl's estimator computes from what the agent loop sends (padded as verl pads)."""
    rewards = torch.zeros(len(BATCH), width)
    mask = torch.zeros(len(BATCH), width, dtype=torch.long)
    for i, t in enumerate(BATCH):
        _, row = episode_rewards(t, bao)
        m = list(t.response_mask)
        if t.episode.termination == "simulator_error":  # as BaorlAgentLoop sends it
            m, row = [0] * len(m), [0.0] * len(row)
        rewards[i, :len(row)] = torch.tensor(row)
        mask[i, :len(m)] = torch.tensor(m)
    index = [f"uid-{i // 4}" for i in range(len(BATCH))]
    adv, returns = bao_token_advantages(rewards, mask, index, score=bao.score, credit=bao.credit,
                                        gamma=bao.gamma, eps=bao.eps)
    assert torch.equal(returns != 0, (mask != 0) & (returns != 0))  # scores only on policy tokens
    return adv


@pytest.mark.parametrize("preset", PRESETS)
def test_verl_token_advantages_equal_the_trl_paths(preset: str) -> None:
    bao = build_config(BAOSection, PRESETS[preset])
    width = max(len(t.response_ids) for t in BATCH) + 5
    trl, verl = trl_path(bao, width), verl_path(bao, width)
    assert trl.abs().sum() > 0  # the batch carries signal
    assert torch.allclose(trl, verl, atol=1e-6), (trl - verl).abs().max()


def test_shaped_rows_and_spans_round_trip() -> None:
    t = GROUPS[0][2]  # failed after 4 of 15 turns
    score, row = episode_rewards(t, BAOSection())
    scored = score_episode(t, BAOSection())
    assert mask_spans(t.response_mask) == t.turn_spans
    assert [row[e - 1] for _, e in t.turn_spans] == pytest.approx(scored.shaped)
    assert score == pytest.approx(scored.score) and sum(1 for x in row if x) <= len(t.turn_spans)
    assert scored.shaped[1] < 0 and row[t.turn_spans[1][1] - 1] < 0  # shaping (over-thinking) is in the row
    with pytest.raises(ValueError, match="empty"):
        shaped_reward_row([1.0], [(2, 2)], 4)
    with pytest.raises(ValueError, match="touches"):
        shaped_reward_row([1.0, 0.0], [(0, 2), (2, 3)], 4)
    with pytest.raises(ValueError, match="beyond"):
        shaped_reward_row([1.0], [(0, 5)], 4)
    with pytest.raises(ValueError, match="group ids"):
        bao_token_advantages(torch.zeros(2, 3), torch.ones(2, 3), ["a"])


def test_launcher_writes_verl_data_and_overrides(tmp_path) -> None:
    cfg = build_config(TrainConfig, {
        "name": "smoke", "output_dir": str(tmp_path / "run"), "model": {"path": "Qwen/Qwen3-0.6B"},
        "bao": {"score": "mean", "credit": "equalized", "penalties": False},
        "loss": {"dual_clip": None},
        "train": {"tasks_per_step": 4, "rollouts_per_task": 8, "mini_batch_tasks": 2, "max_steps": 6,
                  "val_every": 0, "learning_rate": 2e-6},
    })
    tasks = load_tasks("function")[:3]
    path = write_dataset(tasks, "function", tmp_path / "run/verl/train.parquet")
    rows = Dataset.from_parquet(str(path)).to_list()
    assert [r["extra_info"]["task_id"] for r in rows] == [t.id for t in tasks]
    assert rows[0]["agent_name"] == "baorl" and rows[0]["prompt"][0]["role"] == "user"
    assert load_tasks("function")[0].model_validate_json(rows[0]["extra_info"]["task"]) == tasks[0]

    ov = dict(o.split("=", 1) for o in verl_overrides(cfg, tmp_path / "run", n_train_tasks=9, n_gpus_per_node=8))
    assert ov["algorithm.adv_estimator"] == "bao" and ov["actor_rollout_ref.actor.policy_loss.loss_mode"] == "bao"
    assert ov["data.train_batch_size"] == "4" and ov["actor_rollout_ref.rollout.n"] == "8"
    assert ov["actor_rollout_ref.actor.ppo_mini_batch_size"] == "2"
    assert ov["+algorithm.bao.score"] == "mean" and ov["+algorithm.bao.credit"] == "equalized"
    # verl counts rollout batches: 6 optimiser steps of 2 of the 4 tasks per batch = 3 batches; 9 tasks make
    # 2 full batches per epoch (the partial one is dropped), so 2 epochs
    assert ov["trainer.total_training_steps"] == "3" and ov["trainer.total_epochs"] == "2"
    assert ov["trainer.test_freq"] == "-1" and ov["trainer.use_v1"] == "true"
    with pytest.raises(ValueError, match="no full rollout batch"):
        verl_overrides(cfg, tmp_path / "run", n_train_tasks=3)
    assert ov["actor_rollout_ref.actor.clip_ratio_c"] == "1000000000.0"  # dual clip off
    assert ov["actor_rollout_ref.actor.optim.lr"] == "2e-06" and ov["trainer.n_gpus_per_node"] == "8"
    assert ov["+baorl.config"].endswith("run/config.yaml")
    assert ov["trainer.logger"] == "[console,tensorboard]"


def test_cli_engine_verl_dry_run_writes_the_run_and_prints_the_command(tmp_path, capsys) -> None:
    from baorl.cli.main import main

    run = tmp_path / "run"
    preset = str(Path(__file__).resolve().parents[1] / "configs" / "bao-qwen3-4b.yaml")
    rc = main(["train", preset, "--engine", "verl", "--dry-run", "--gpus-per-node", "8",
               "--verl-python", "/opt/verl/bin/python", "--verl-arg", "trainer.val_before_train=false",
               "--set", f"output_dir={run}"])
    assert rc == 0
    cmd = capsys.readouterr().out
    assert cmd.startswith("/opt/verl/bin/python -m verl.trainer.main_ppo ")
    assert "algorithm.adv_estimator=bao" in cmd and "trainer.n_gpus_per_node=8" in cmd
    assert cmd.rstrip().endswith("trainer.val_before_train=false")  # extra overrides come last and win
    for f in ("config.yaml", "verl/train.parquet", "verl/val.parquet", "verl/agent_loops.yaml", "verl/command.sh"):
        assert (run / f).is_file(), f
    assert len(Dataset.from_parquet(str(run / "verl/train.parquet"))) == 460
    # the paper's run length in verl's unit: 30 epochs x 3 full batches of 128 of the 460 tasks
    assert "trainer.total_training_steps=90 " in cmd and "trainer.total_epochs=30 " in cmd
    assert "BaorlAgentLoop" in (run / "verl/agent_loops.yaml").read_text()
    assert "VERL_USE_EXTERNAL_MODULES=baorl.train.verl.plugin" in (run / "verl/command.sh").read_text()
    assert main(["train", preset, "--engine", "verl", "--resume", str(run)]) == 2


def test_cli_refuses_verls_legacy_trainer_before_any_work(tmp_path, capsys) -> None:
    from baorl.cli.main import main

    run = tmp_path / "run"
    preset = str(Path(__file__).resolve().parents[1] / "configs" / "bao-qwen3-4b.yaml")
    rc = main(["train", preset, "--engine", "verl", "--dry-run", "--verl-arg", "trainer.use_v1=false",
               "--set", f"output_dir={run}"])
    assert rc == 2
    assert "legacy trainer" in capsys.readouterr().err and not run.exists()
