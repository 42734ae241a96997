"""The BAO trainer on TRL: config errors, advantages in TRL's batch, a real two-step run that moves the
policy the way the advantages say, resume after a kill, and the NaN guard."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from transformers import TrainerCallback

from baorl.agents import tool_call_text
from baorl.config import ConfigError, build_config
from baorl.models import load_tokenizer, tiny_model
from baorl.rollout.engine import RolloutEngine
from baorl.train.config import TrainConfig
from baorl.train.trainer import engine_config

GEN = "<|im_start|>assistant\n"


# ---- config ---------------------------------------------------------------------------------------
def test_unknown_key_and_wrong_type_fail_naming_the_key() -> None:
    with pytest.raises(ConfigError, match=r"bao\.c_repp: Extra inputs"):
        build_config(TrainConfig, {"bao": {"c_repp": 0.1}})
    with pytest.raises(ConfigError, match=r"train\.learning_rate: Input should be a valid number"):
        build_config(TrainConfig, {}, ["train.learning_rate=fast"])
    for bad in ("train.learning_rate=.inf", "train.learning_rate=.nan", "bao.c_len=.inf"):
        with pytest.raises(ConfigError, match="finite"):
            build_config(TrainConfig, {}, [bad])
    with pytest.raises(ConfigError, match="mini_batch_tasks"):
        build_config(TrainConfig, {"train": {"tasks_per_step": 8, "mini_batch_tasks": 3}})


def test_presets_load_and_differ_only_where_the_baseline_does() -> None:
    from baorl.config import load_config

    root = Path(__file__).resolve().parents[1] / "configs"
    bao = load_config(TrainConfig, root / "bao-embedded.yaml")
    base = load_config(TrainConfig, root / "userrl-embedded.yaml")
    assert (bao.bao.score, bao.bao.credit, bao.bao.penalties) == ("sum", "r2g", True)
    assert (base.bao.score, base.bao.credit, base.bao.penalties) == ("mean", "equalized", False)
    assert bao.model == base.model and bao.train == base.train and bao.rollout == base.rollout
    for name in ("bao-qwen3-4b.yaml", "userrl-qwen3-4b.yaml"):
        paper = load_config(TrainConfig, root / name)
        assert paper.train.tasks_per_step == 128 and paper.train.rollouts_per_task == 8
        assert paper.train.mini_batch_tasks == 16 and paper.train.learning_rate == 1e-6


# ---- a real run on a tiny model ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tok = load_tokenizer("embedded")
    path = tmp_path_factory.mktemp("tiny")
    tiny_model(tok, seed=3).save_pretrained(path)
    tok.save_pretrained(path)
    return path


class YesNo:
    """Rollout forcing: each turn starts with ``Y`` or ``N``, sampled from the model's own two logits;
    ``Y`` continues with the right answer, ``N`` with a wrong one. So the policy's only free choice is
    Y vs N, and BAO's advantages must push it towards Y."""

    def __init__(self, tok, expected: float) -> None:
        self.tok = tok
        self.enc = lambda s: tok(s, add_special_tokens=False)["input_ids"]
        self.gen = self.enc(GEN)
        self.y, self.n = self.enc("Y")[0], self.enc("N")[0]
        self.expected = expected

    def script(self, first: int) -> list[int]:
        value = self.expected  # one training task: its prompt is the same for every row
        answer = f"{value:g}" if first == self.y else f"{value + 1:g}"
        return self.enc(tool_call_text("answer", answer))

    def __call__(self, contexts: list[list[int]], logits: torch.Tensor) -> torch.Tensor:
        out = torch.full_like(logits, -1e9)
        g = len(self.gen)
        for r, ids in enumerate(contexts):
            start = max(j for j in range(g, len(ids) + 1) if ids[j - g:j] == self.gen)
            turn = ids[start:]
            if not turn:
                out[r, self.y], out[r, self.n] = logits[r, self.y], logits[r, self.n]
                continue
            rest = self.script(turn[0])
            k = len(turn) - 1
            out[r, rest[k] if k < len(rest) else self.tok.convert_tokens_to_ids("<|im_end|>")] = 0.0
        return out


def yes_margin(model, tok, prompt_ids: list[int]) -> float:
    with torch.no_grad():
        logits = model(torch.tensor([prompt_ids])).logits[0, -1]
    y, n = tok("Y", add_special_tokens=False)["input_ids"][0], tok("N", add_special_tokens=False)["input_ids"][0]
    return float(logits[y] - logits[n])


def make_cfg(tiny_dir: Path, out: Path, **train) -> TrainConfig:
    return build_config(TrainConfig, {
        "name": "t", "output_dir": str(out),
        "model": {"path": str(tiny_dir), "chat_template": "chatml-tools"},
        "data": {"gym": "function", "max_train_tasks": 1, "max_val_tasks": 2},
        "rollout": {"max_turns": 2, "max_new_tokens_per_turn": 64, "max_response_tokens": 400, "batch_size": 8},
        "train": {"tasks_per_step": 1, "rollouts_per_task": 8, "micro_batch_size": 4, "learning_rate": 3e-3,
                  "max_steps": 2, "val_every": 0, "val_at_start": False, "report_to": [], "seed": 1, **train},
    })


def build_trainer(cfg: TrainConfig, callbacks=None):
    from baorl.models import load_model
    from baorl.train.tasks import training_tasks
    from baorl.train.trainer import BAOTrainer

    model, tok = load_model(cfg.model.path)
    tasks = training_tasks(cfg)
    trainer = BAOTrainer(cfg, model, tok, tasks, Path(cfg.output_dir), max_steps=cfg.train.max_steps,
                         callbacks=callbacks or [])
    expected = tasks[0].expected_result  # the forced "Y" answers the first task right
    trainer._engine = RolloutEngine(trainer.policy_model(), tok, engine_config(cfg), logits_processor=YesNo(tok, expected))
    return trainer, tasks


def test_two_steps_move_the_policy_towards_positive_advantages(tiny_dir: Path, tmp_path: Path, monkeypatch) -> None:
    cfg = make_cfg(tiny_dir, tmp_path / "run")
    trainer, tasks = build_trainer(cfg)
    # peak memory is read when the step is logged, after its update (the optimiser step count by then)
    monkeypatch.setattr("baorl.train.trainer.peak_rss_gib", lambda: float(trainer.state.global_step))
    engine = trainer.engine()
    gym = trainer.make_gyms([tasks[0].id])[0]
    obs, info = gym.reset(seed=0)
    prompt = engine.renderer.encode(engine.renderer.prompt_text(info["system_prompt"], obs))
    before = yes_margin(trainer.model, trainer.processing_class, prompt)
    w0 = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train()
    after = yes_margin(trainer.model, trainer.processing_class, prompt)
    assert any(not torch.equal(w0[k], v) for k, v in trainer.model.state_dict().items())
    assert after > before + 0.05, (before, after)
    rollouts = [json.loads(line) for line in (tmp_path / "run" / "rollouts.jsonl").read_text().splitlines()]
    assert len(rollouts) == 2 * 8 and {r["step"] for r in rollouts} == {0, 1}
    assert any(r["success"] for r in rollouts) and not all(r["success"] for r in rollouts)
    live = [r["update/null_pass_frac"] for r in trainer.state.log_history if "update/null_pass_frac" in r]
    assert len(live) == 2 and min(live) < 1.0  # mixed outcomes: passes with a gradient are not skipped
    peaks = [r["memory/peak_rss_gib"] for r in trainer.state.log_history if "memory/peak_rss_gib" in r]
    assert peaks == [1.0, 2.0]  # read at the rollouts they would be 0 and 1


def test_advantages_in_trls_batch_are_baos(tiny_dir: Path, tmp_path: Path) -> None:
    from baorl.bao import group_advantages, shape_rewards, token_advantages, trajectory_score, turn_credits

    cfg = make_cfg(tiny_dir, tmp_path / "run")
    trainer, tasks = build_trainer(cfg)
    prompts = [t.id for t in tasks for _ in range(8)]
    inputs = [{"prompt": p} for p in prompts]
    out = trainer._generate_and_score_completions(inputs)
    eps = [row["bao_episode"] for row in inputs]  # each scored episode travels with its batch row
    assert len(eps) == 8
    scores = []
    for e in eps:
        shaped = shape_rewards(e.rewards, e.choices, max_turns=2)
        assert shaped == pytest.approx(e.shaped)
        scores.append(trajectory_score(shaped, "sum"))
    adv = group_advantages(scores, [0] * 8)
    mask = out["tool_mask"] * out["completion_mask"]
    for i, e in enumerate(eps):
        row = out["advantages"][i]
        expect = token_advantages(turn_credits(e.shaped, "r2g", gamma=0.8), adv[i], e.turn_lengths)
        assert row[mask[i].bool()].tolist() == pytest.approx(expect, abs=1e-6)
        assert row[~mask[i].bool()].abs().sum() == 0


class AlwaysNo(YesNo):
    """Every episode answers wrong: all rewards 0, so with the penalties off every advantage is 0."""

    def __call__(self, contexts: list[list[int]], logits: torch.Tensor) -> torch.Tensor:
        out = super().__call__(contexts, logits)
        first = out[:, self.y] > -1e9  # a turn's first token: Y or N, sampled; here N is forced
        out[first, self.y] = -1e9
        out[first, self.n] = 0.0
        return out


@pytest.mark.parametrize("penalties", [False, True])
def test_null_passes_are_skipped_and_change_nothing(tiny_dir: Path, tmp_path: Path, penalties: bool) -> None:
    """A micro-batch whose advantages are all 0 has a zero gradient; skipping its forward/backward
    must leave the run bit for bit what it was (AdamW still steps: momentum and weight decay). Without
    penalties every episode here scores 0, so every pass is null; BAO's over-thinking penalty is the
    same (-0.5) for every one-turn failure, so its passes are null too. (Live passes: the next test.)"""
    weights, fracs = {}, {}
    for skip in (True, False):
        cfg = make_cfg(tiny_dir, tmp_path / f"run-{skip}", skip_null_passes=skip, weight_decay=0.1)
        cfg.bao.penalties = penalties
        cfg.rollout.max_turns = 1
        trainer, tasks = build_trainer(cfg)
        trainer._engine.logits_processor = AlwaysNo(trainer.processing_class, tasks[0].expected_result)
        w0 = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        trainer.train()
        weights[skip] = trainer.model.state_dict()
        fracs[skip] = [r["update/null_pass_frac"] for r in trainer.state.log_history if "update/null_pass_frac" in r]
        assert any(not torch.equal(w0[k], v) for k, v in weights[skip].items())  # weight decay moved them
    assert fracs[True] == [1.0, 1.0] and fracs[False] == [0.0, 0.0]
    assert all(torch.equal(weights[True][k], v) for k, v in weights[False].items())


class KillAfter(TrainerCallback):
    def __init__(self, step: int) -> None:
        self.step = step

    def on_save(self, args, state, control, **kw):
        if state.global_step == self.step:
            raise KeyboardInterrupt("killed")


def test_killed_run_resumes_without_losing_a_step(tiny_dir: Path, tmp_path: Path) -> None:
    """Three tasks, one per step, so epoch 0 is steps 1-3 and epoch 1 starts at step 4. The run is
    killed twice: mid-epoch (after step 1, with step 2's rollouts logged and a torn line), and at the
    epoch boundary (after step 3; TRL's sampler alone replayed epoch 0's task order there). Both
    resumes must reproduce the uninterrupted run: the same rollouts byte for byte, the same weights."""
    from baorl.train.callbacks import MetricsFile

    small = {"max_steps": 4, "rollouts_per_task": 4, "micro_batch_size": 4}

    def cfg_at(out: Path) -> TrainConfig:
        cfg = make_cfg(tiny_dir, out, **small)
        cfg.data.max_train_tasks = 3
        return cfg

    full, _ = build_trainer(cfg_at(tmp_path / "full"))
    full.train()
    full_log = (tmp_path / "full" / "rollouts.jsonl").read_text()
    order = [json.loads(line)["task_id"] for line in full_log.splitlines()]
    assert len(set(order[:12])) == 3 and order[12] != order[0]  # a new order in epoch 1 (else the test is blind)

    cfg = cfg_at(tmp_path / "killed")
    run = Path(cfg.output_dir)
    killed, _ = build_trainer(cfg, callbacks=[MetricsFile(run / "metrics.jsonl"), KillAfter(1)])
    with pytest.raises(KeyboardInterrupt):
        killed.train()
    assert (run / "checkpoint-1").is_dir() and not (run / "checkpoint-2").exists()
    # as if the kill came later, mid-step 2: its rollouts were logged, the last line torn
    rollouts = run / "rollouts.jsonl"
    step1 = rollouts.read_text().splitlines()
    assert step1 and all(json.loads(line)["step"] == 0 for line in step1)
    stale = [json.dumps({**json.loads(line), "step": 1}) for line in step1]
    rollouts.write_text("".join(line + "\n" for line in step1 + stale) + stale[0][:20])
    mid, _ = build_trainer(cfg, callbacks=[MetricsFile(run / "metrics.jsonl", resume_step=1), KillAfter(3)])
    with pytest.raises(KeyboardInterrupt):
        mid.train(resume_from_checkpoint=str(run / "checkpoint-1"))
    logged = [json.loads(line) for line in rollouts.read_text().splitlines()]  # every line whole again
    assert [r["step"] for r in logged] == [s for s in range(3) for _ in range(4)]  # one set per step
    resumed, _ = build_trainer(cfg, callbacks=[MetricsFile(run / "metrics.jsonl", resume_step=3)])
    resumed.train(resume_from_checkpoint=str(run / "checkpoint-3"))
    assert resumed.state.global_step == 4
    assert full_log == rollouts.read_text()
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert sorted(set(steps)) == [1, 2, 3, 4] and steps == sorted(steps)
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a), "resumed run diverged from the uninterrupted one"


def test_nan_loss_stops_before_the_update(tiny_dir: Path, tmp_path: Path, monkeypatch) -> None:
    from baorl.train.trainer import BAOTrainer, NonFiniteLossError

    cfg = make_cfg(tiny_dir, tmp_path / "run", max_steps=1)
    trainer, _ = build_trainer(cfg)
    real = BAOTrainer._get_per_token_logps_and_entropies

    def poisoned(self, *a, **kw):
        logps, ent, aux = real(self, *a, **kw)
        return logps * float("nan"), ent, aux

    monkeypatch.setattr(BAOTrainer, "_get_per_token_logps_and_entropies", poisoned)
    w0 = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with pytest.raises(NonFiniteLossError, match="stopped before the update"):
        trainer.train()
    assert all(torch.equal(w0[k], v) for k, v in trainer.model.state_dict().items())


# ---- the command line -----------------------------------------------------------------------------
def test_cli_bad_config_fails_before_any_work_naming_the_key(tmp_path: Path, capsys) -> None:
    from baorl.cli.main import main

    def err() -> str:
        return " ".join(capsys.readouterr().err.split())  # rich wraps long lines

    cfg = tmp_path / "c.yaml"
    cfg.write_text("bao:\n  c_rep: 0.1\n  gama: 0.9\n")
    assert main(["train", str(cfg), "--set", f"output_dir={tmp_path / 'run'}"]) == 2
    assert "bao.gama: Extra inputs are not permitted" in err()
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert "config file not found" in err()
    cfg.write_text("train:\n  tasks_per_step: 4\n")
    assert main(["train", str(cfg), "--set", "train.micro_batch_size=3"]) == 2
    assert "micro_batch_size (3) must divide" in err()
    assert main(["train", "--resume", str(tmp_path / "nowhere")]) == 2
    assert "no config.yaml there" in err()
    assert not (tmp_path / "run").exists()


def test_cli_train_runs_and_resume_continues(tiny_dir: Path, tmp_path: Path, capsys) -> None:
    """`baorl train` end to end on a tiny model (unforced: the model never calls the tool, so every
    episode ends on its first turn), then `--resume` of the finished run is a no-op that loses nothing."""
    import yaml

    from baorl.cli.main import main

    def out() -> str:
        return "".join(capsys.readouterr().out.split())  # rich wraps (and may fold) long lines

    run = tmp_path / "run"
    cfg = make_cfg(tiny_dir, run, max_steps=1, val_at_start=True)
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    assert main(["train", str(cfg_file), "--set", "rollout.max_new_tokens_per_turn=8"]) == 0
    for f in ("config.yaml", "metrics.jsonl", "rollouts.jsonl", "summary.json", "final/config.json",
              "best/config.json", "val/best.json", "val/step_000000/episodes.jsonl", "val/step_000001/metrics.json"):
        assert (run / f).exists(), f
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("val/score" in m for m in metrics) and any("loss" in m for m in metrics)
    assert main(["train", str(cfg_file), "--set", "rollout.max_new_tokens_per_turn=8"]) == 2  # not empty: refuse
    assert main(["train", "--resume", str(run)]) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 1 and summary["policy"] == str(run / "best")
    # each start and resume names the code it ran
    prov = [json.loads(line) for line in (run / "provenance.jsonl").read_text().splitlines()]
    assert [p["event"] for p in prov] == ["start", "resume"] and prov[1]["from_step"] == 1
    assert all("commit" in p and p["argv"][1] == "train" for p in prov)
    assert f"policy:hf:{run / 'best'}" in out()
    # validation off: no best/, and the policy to evaluate is final/
    quiet = tmp_path / "quiet"
    cfg_file.write_text(yaml.safe_dump(make_cfg(tiny_dir, quiet, max_steps=1, val_at_end=False).model_dump(mode="json")))
    assert main(["train", str(cfg_file), "--set", "rollout.max_new_tokens_per_turn=8"]) == 0
    summary = json.loads((quiet / "summary.json").read_text())
    assert summary["best"] is None and summary["best_path"] is None and summary["policy"] == str(quiet / "final")
    assert not (quiet / "best").exists() and (quiet / "final/config.json").exists()
    assert f"novalidation(train.val_every0)·policy:hf:{quiet / 'final'}" in out()


def test_resume_passes_over_a_half_written_checkpoint(tmp_path: Path) -> None:
    from baorl.train.run import complete_checkpoint

    for step, files in ((1, ("model.safetensors", "optimizer.pt", "trainer_state.json")),
                        (2, ("model.safetensors", "optimizer.pt")),   # killed before its trainer state
                        (3, ("trainer_state.json",))):                  # or with its weights missing
        d = tmp_path / f"checkpoint-{step}"
        d.mkdir()
        for f in files:
            (d / f).write_text("{}")
    assert complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-1")
    (tmp_path / "checkpoint-1" / "trainer_state.json").write_text('{"global_')  # torn JSON
    assert complete_checkpoint(tmp_path) is None


def test_cli_failed_new_run_leaves_nothing_behind(tmp_path: Path, capsys) -> None:
    import yaml

    from baorl.cli.main import main

    run = tmp_path / "run"
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(yaml.safe_dump({"output_dir": str(run), "model": {"path": str(tmp_path / "no-such-model")},
                                        "train": {"max_steps": 1, "report_to": []}}))
    assert main(["train", str(cfg_file)]) == 2
    assert "no-such-model" in capsys.readouterr().err
    assert not run.exists()  # so the corrected command is not refused as "not empty"


def test_rollout_backend_auto_picks_vllm_only_with_vllm_and_a_gpu(monkeypatch) -> None:
    import importlib.util

    from baorl.train.run import resolve_backend

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_backend("auto") == "hf" and resolve_backend("hf") == "hf"
    with pytest.raises(ValueError, match="gpu extra"):
        resolve_backend("vllm")
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "vllm" else real_find_spec(name, *a))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_backend("auto") == "vllm" and resolve_backend("vllm") == "vllm"
    assert resolve_backend("auto", use_cpu=True) == "hf"  # train.use_cpu forces the CPU engine


def test_trl_methods_baorl_overrides_still_exist_with_the_arguments_used() -> None:
    """BAOTrainer overrides TRL 1.16.0's private methods; a TRL that renames them must fail here, not
    silently run TRL's own versions (plain GRPO advantages and loss)."""
    import inspect

    from trl import GRPOTrainer

    from baorl.train.trainer import BAOTrainer

    expected = {"_generate_and_score_completions": ["self", "inputs"],
                "_compute_loss": ["self", "model", "inputs"],
                "_get_train_sampler": ["self", "dataset"],
                "train": ["self", "resume_from_checkpoint"]}
    for name, params in expected.items():
        assert name in vars(BAOTrainer), name  # baorl overrides it
        base = getattr(GRPOTrainer, name)  # and TRL still has it, with these leading arguments
        assert list(inspect.signature(base).parameters)[: len(params)] == params, name
    assert "rollout_func" in inspect.signature(GRPOTrainer.__init__).parameters


def test_bf16_rollouts_and_updates_still_learn_the_forced_choice(tiny_dir: Path, tmp_path: Path) -> None:
    """bf16 end to end (forced on, whatever the CPU): rollouts on a bf16 copy of the fp32 policy,
    updates under bf16 autocast over fp32 master weights; the short run still learns the forced
    choice, the copy follows the master, and the rollout/update agreement is logged every step."""
    cfg = make_cfg(tiny_dir, tmp_path / "run", bf16=True)
    cfg.rollout.bf16 = True
    cfg.rollout.max_turns = 1  # one answer per episode: bf16 is slow on CPUs without bf16 units
    trainer, tasks = build_trainer(cfg)
    trainer._engine = None  # let the trainer build its engine on the bf16 copy, with the forcing processor
    yes_no = YesNo(trainer.processing_class, tasks[0].expected_result)
    engine = trainer.engine()
    engine.logits_processor = yes_no
    assert trainer._rollout_weights is not None
    assert next(engine.model.parameters()).dtype == torch.bfloat16
    assert trainer.model.dtype == torch.float32  # the master weights stay fp32
    gym = trainer.make_gyms([tasks[0].id])[0]
    obs, info = gym.reset(seed=0)
    prompt = engine.renderer.encode(engine.renderer.prompt_text(info["system_prompt"], obs))
    before = yes_margin(trainer.model, trainer.processing_class, prompt)
    trainer.train()
    after = yes_margin(trainer.model, trainer.processing_class, prompt)
    assert after > before + 0.05, (before, after)
    assert trainer.model.dtype == torch.float32
    # the copy is refreshed before each rollout: after one more refresh it is the master, rounded
    copy = trainer.rollout_model()
    for (name, c), m in zip(copy.named_parameters(), trainer.policy_model().parameters(), strict=True):
        assert torch.equal(c, m.detach().to(torch.bfloat16)), name
    logs = [r for r in trainer.state.log_history if "rollout/ratio_mean" in r]
    assert len(logs) == 2  # every step (one optimiser step per rollout batch here)
    assert all(math.isfinite(r["rollout/ratio_std"]) for r in logs)  # (forced tokens: no agreement expected)


@pytest.mark.parametrize("rollout_bf16", [False, True])
def test_rollout_update_agreement_is_measured_in_the_first_step(tiny_dir: Path, tmp_path: Path,
                                                                 rollout_bf16: bool) -> None:
    """Sampled log-probs (the engine's, in the rollout precision) against the update's, before any
    update: fp32 rollouts agree with fp32 updates to rounding; a bf16 copy disagrees measurably but
    little, and `rollout_correction: tis` weights each token by the truncated ratio."""
    # (every episode of the untrained tiny model fails, so every pass is null: measure them anyway)
    cfg = make_cfg(tiny_dir, tmp_path / "run", max_steps=1, rollouts_per_task=4, bf16=False, skip_null_passes=False)
    cfg.rollout.bf16 = rollout_bf16
    cfg.rollout.max_turns = 1
    cfg.rollout.max_new_tokens_per_turn = 24
    cfg.loss.rollout_correction = "tis"
    from baorl.models import load_model
    from baorl.train.tasks import training_tasks
    from baorl.train.trainer import BAOTrainer

    model, tok = load_model(cfg.model.path)
    trainer = BAOTrainer(cfg, model, tok, training_tasks(cfg), Path(cfg.output_dir), max_steps=1)
    trainer.train()
    (log,) = [r for r in trainer.state.log_history if "rollout/ratio_mean" in r]
    diff, weight = log["rollout/logp_abs_diff"], log["loss/tis_weight_mean"]
    if rollout_bf16:
        assert 1e-4 < diff < 0.2, diff
        assert weight != 1.0 and abs(weight - 1.0) < 0.2
    else:
        assert diff < 1e-3, diff
        assert abs(log["rollout/ratio_mean"] - 1.0) < 1e-3 and abs(weight - 1.0) < 1e-3
