"""Precision per phase (`baorl.models.precision`): detection, `auto`, the bf16 rollout copy, TIS."""

from __future__ import annotations

import pytest
import torch

from baorl.bao import ppo_loss, truncated_is_weights
from baorl.config import ConfigError, build_config
from baorl.models import precision
from baorl.models.precision import RolloutWeights, resolve_bf16, resolve_dtype


@pytest.mark.parametrize("flags, unit", [
    ({"avx2", "avx512f", "avx512_bf16"}, "AVX512-BF16"),
    ({"avx512_bf16", "amx_bf16", "amx_tile"}, "AMX-BF16"),
    ({"fp", "asimd", "bf16", "i8mm"}, "Arm BF16"),
    ({"avx", "avx2", "fma", "f16c"}, None),  # this kind of machine: AVX2 only
    (set(), None),
])
def test_bf16_units_are_read_from_the_cpu_flags(flags: set[str], unit: str | None) -> None:
    assert precision._units_in(flags) == unit


def test_auto_follows_the_hardware_and_explicit_choices_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(precision, "cpu_bf16_units", lambda: None)
    assert resolve_bf16("auto", "cpu") is False and resolve_bf16(None, "cpu") is False
    assert resolve_dtype("auto", "cpu") == "float32"
    assert resolve_bf16(True, "cpu") is True and resolve_bf16(False, "cpu") is False  # honoured, with a warning
    monkeypatch.setattr(precision, "cpu_bf16_units", lambda: "AMX-BF16")
    assert resolve_bf16("auto", "cpu") is True and resolve_dtype("auto", "cpu") == "bfloat16"
    assert resolve_dtype("float32", "cpu") == "float32"
    assert "AMX-BF16" in precision.precision_note("cpu")


def test_the_choice_is_said_once(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setattr(precision, "cpu_bf16_units", lambda: None)
    monkeypatch.setattr(precision, "_SAID", set())
    for _ in range(3):
        resolve_bf16("auto", "cpu", what="rollouts")
    err = capsys.readouterr().err
    assert err.count("rollouts: fp32") == 1 and "no bf16 matrix units" in err


def test_rollout_copy_is_bf16_follows_the_master_and_keeps_buffers(tok) -> None:
    from baorl.models import tiny_model

    model = tiny_model(tok)
    copy = RolloutWeights(model)
    assert all(p.dtype == torch.bfloat16 and not p.requires_grad for p in copy.model.parameters())
    assert all(b.dtype == torch.float32 for b in copy.model.buffers() if b.is_floating_point())
    assert next(model.parameters()).dtype == torch.float32  # the master is untouched
    # tied embeddings stay tied in the copy (one tensor, refreshed once)
    assert copy.model.get_input_embeddings().weight is copy.model.get_output_embeddings().weight
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.25)
    stale = next(copy.model.parameters()).clone()
    fresh = copy.refresh()
    assert fresh is copy.model
    assert not torch.equal(stale, next(fresh.parameters()))
    for c, m in zip(fresh.parameters(), model.parameters(), strict=True):
        assert torch.equal(c, m.detach().to(torch.bfloat16))
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        a, b = model(ids).logits, fresh(ids).logits.float()
    assert (a - b).abs().max() < 0.01 * a.abs().max()  # the same function, rounded to bf16


def test_truncated_is_weights_and_weighted_loss() -> None:
    old = torch.tensor([[0.0, -1.0, 0.0, 0.0]])
    sampled = torch.tensor([[0.0, -1.5, 2.0, float("nan")]])
    mask = torch.tensor([[1, 1, 1, 1]])
    w = truncated_is_weights(old, sampled, mask, cap=1.5)
    assert w[0].tolist() == pytest.approx([1.0, 1.5, float(torch.exp(torch.tensor(-2.0))), 1.0])
    with pytest.raises(ValueError, match="cap"):
        truncated_is_weights(old, sampled, mask, cap=0.5)
    # weights multiply each token's loss and carry no gradient; weights of 1 are the paper's loss
    lp = torch.tensor([[0.1, -0.2, 0.3]], requires_grad=True)
    o, a, m = torch.zeros(1, 3), torch.tensor([[1.0, -1.0, 2.0]]), torch.ones(1, 3)
    plain, _ = ppo_loss(lp, o, a, m)
    same, _ = ppo_loss(lp, o, a, m, weights=torch.ones(1, 3))
    assert same.item() == pytest.approx(plain.item())
    wt = torch.tensor([[2.0, 0.0, 1.0]], requires_grad=True)
    weighted, _ = ppo_loss(lp, o, a, m, weights=wt)
    per_token = [max(-1.0 * torch.exp(torch.tensor(0.1)).item(), -1.2), 0.0, -2.0 * 1.2]
    assert weighted.item() == pytest.approx((2.0 * per_token[0] + 0.0 + per_token[2]) / 3, rel=1e-5)
    weighted.backward()
    assert wt.grad is None
    with pytest.raises(ValueError, match="weights"):
        ppo_loss(lp, o, a, m, weights=torch.ones(2, 3))


def test_precision_keys_in_configs() -> None:
    from baorl.train.config import TrainConfig
    from baorl.train.sft import SFTRunConfig

    cfg = build_config(TrainConfig, {})
    assert cfg.rollout.bf16 == "auto" and cfg.train.bf16 == "auto" and cfg.loss.rollout_correction == "none"
    cfg = build_config(TrainConfig, {"rollout": {"bf16": False}, "train": {"bf16": True},
                                     "loss": {"rollout_correction": "tis", "tis_cap": 3.0}})
    assert cfg.rollout.bf16 is False and cfg.train.bf16 is True and cfg.loss.tis_cap == 3.0
    sft = build_config(SFTRunConfig, {"data": {"train": "x.jsonl"}, "train": {"bf16": None}})
    assert sft.train.bf16 == "auto"  # null, the old "on where a GPU supports it", reads as auto
    for bad in ({"train": {"bf16": "sometimes"}}, {"rollout": {"bf16": "fp16"}}, {"loss": {"tis_cap": 0.5}},
                {"loss": {"rollout_correction": "is"}}):
        with pytest.raises(ConfigError):
            build_config(TrainConfig, bad)


def test_local_models_resolve_their_precision_into_the_run_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    from baorl.cli.options import check_engine_options
    from baorl.runs.runner import local_precision

    monkeypatch.setattr(precision, "cpu_bf16_units", lambda: None)
    assert local_precision({"batch_size": 8}) == {"batch_size": 8}  # fp32: the identity of older records
    assert local_precision({"dtype": "bfloat16"}) == {"dtype": "bfloat16"}
    monkeypatch.setattr(precision, "cpu_bf16_units", lambda: "AVX512-BF16")
    assert local_precision(None) == {"dtype": "bfloat16"}
    assert local_precision({"dtype": "float32"}) == {}
    with pytest.raises(ValueError, match="--dtype applies to hf: agents only"):
        check_engine_options("scripted:random", {"dtype": "bfloat16"})
