"""The shared YAML config loader (`baorl.config.load_config`): errors name the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from baorl.config import ConfigError, StrictModel, load_config


class Cfg(StrictModel):
    name: str = "run"
    lr: float = 1e-6


def test_loads_a_utf8_file(tmp_path: Path) -> None:
    p = tmp_path / "ok.yaml"
    p.write_text("name: caf\u00e9\nlr: 3.0e-6\n", encoding="utf-8")
    cfg = load_config(Cfg, p, ["lr=1e-5"])
    assert (cfg.name, cfg.lr) == ("caf\u00e9", 1e-5)


def test_a_non_utf8_file_is_named(tmp_path: Path) -> None:
    p = tmp_path / "latin1.yaml"
    p.write_bytes("name: caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1\.yaml: not UTF-8 text \(byte 9"):
        load_config(Cfg, p)


def test_bad_yaml_and_missing_file_are_named(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("name: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.yaml: not valid YAML"):
        load_config(Cfg, p)
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_config(Cfg, tmp_path / "missing.yaml")


def test_old_keys_are_refused_with_their_new_name(tmp_path: Path) -> None:
    from baorl.train.config import TrainConfig
    from baorl.train.sft import SFTRunConfig

    p = tmp_path / "old.yaml"
    p.write_text("train: {lr: 1.0e-6, lr_scheduler: constant, save_every: 2, keep_checkpoints: 1}\n", encoding="utf-8")
    with pytest.raises(ConfigError) as e:
        load_config(TrainConfig, p)
    assert str(e.value) == (f"{p}: train.lr: renamed to train.learning_rate; train.lr_scheduler: renamed to "
                            "train.lr_scheduler_type; train.save_every: renamed to train.save_steps; "
                            "train.keep_checkpoints: renamed to train.save_total_limit")
    p.write_text("data: {train: x.jsonl}\nlora: {enabled: true}\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"lora: renamed to model\.lora$"):
        load_config(SFTRunConfig, p)
    for old, new in (("train.activation_checkpointing=true", "train.gradient_checkpointing"),
                     ("train.device=cpu", "train.use_cpu"), ("train.scheduler=cosine", "train.lr_scheduler_type"),
                     ("train.batch_size=2", "train.per_device_train_batch_size")):
        with pytest.raises(ConfigError, match=f"{old.split('=')[0]}: renamed to {new}"):
            load_config(SFTRunConfig, _sft_file(tmp_path), [old])


def _sft_file(tmp_path: Path) -> Path:
    p = tmp_path / "sft.yaml"
    p.write_text("data: {train: x.jsonl}\nmodel: {lora: {enabled: true, r: 4}}\n", encoding="utf-8")
    return p


def test_one_vocabulary_and_one_episode_limits() -> None:
    from baorl.rollout.engine import EngineConfig
    from baorl.rollout.episode import EpisodeLimits, Limits
    from baorl.train.config import ModelSection, OptimSection, RolloutSection, TrainConfig
    from baorl.train.sft import SFTRunConfig

    sft, rl = SFTRunConfig.model_validate({"data": {"train": "x.jsonl"}}), TrainConfig()
    for cfg in (sft, rl):
        assert isinstance(cfg.model, ModelSection) and isinstance(cfg.train, OptimSection)
        assert set(OptimSection.model_fields) <= set(type(cfg.train).model_fields)
    assert issubclass(EngineConfig, EpisodeLimits) and issubclass(RolloutSection, EpisodeLimits)
    budget_only = RolloutSection(max_new_tokens_per_turn=None, max_response_tokens=300, trailing_generation=True)
    assert Limits.of(budget_only) == Limits(1152, 300, 300, None, None, True)
    assert Limits.of(EngineConfig()) == Limits()


def test_training_rollouts_pass_the_engines_memory_admission() -> None:
    from pydantic import ValidationError

    from baorl.train.config import TrainConfig
    from baorl.train.trainer import engine_config

    assert engine_config(TrainConfig()).kv_admission == "turn"
    cfg = TrainConfig.model_validate({"rollout": {"kv_admission": "budget", "max_kv_gib": 2.5}})
    for greedy in (False, True):
        engine = engine_config(cfg, greedy=greedy)
        assert (engine.kv_admission, engine.max_kv_gib) == ("budget", 2.5)
    with pytest.raises(ValidationError, match="kv_admission"):
        TrainConfig.model_validate({"rollout": {"kv_admission": "always"}})
