"""`baorl sft`: assistant-only masks, train/infer token identity, TRL's data path, a tiny run, bad input.

The conversations are real: the Function solver plays a few training tasks, and `baorl teach`'s
exporter turns its episodes into the SFT file, so these tests cover the exporter -> TRL -> rollout
engine round trip the warm start depends on.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import torch

from baorl.agents import make_agent, tool_call_text
from baorl.cli.main import main
from baorl.config import ConfigError, build_config, load_config
from baorl.gyms import load_tasks, make
from baorl.models import CHAT_TEMPLATES, chat_template, load_model, load_tokenizer, tiny_model
from baorl.records import Episode
from baorl.rollout.engine import EngineConfig, RolloutEngine
from baorl.rollout.render import ChatRenderer
from baorl.runs.play import aplay_episode
from baorl.teach.export import episode_to_conversation, write_jsonl_atomic
from baorl.train.sft import SFTRunConfig, build_dataset, build_trainer, run_sft, to_example, training_template
from baorl.train.verl.advantages import mask_spans

torch.set_num_threads(2)

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
N_CONVERSATIONS = 8


# ---- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def solved(tmp_path_factory) -> tuple[Path, list[Episode]]:
    """An SFT file of solver episodes on the first Function training tasks, written by the exporter."""
    tasks = load_tasks("function", split="train")[:N_CONVERSATIONS]

    async def play() -> list[Episode]:
        return [await aplay_episode(make("function", task=t), make_agent("scripted:function-solver")) for t in tasks]

    episodes = asyncio.run(play())
    assert all(ep.success for ep in episodes)
    path = tmp_path_factory.mktemp("sft-data") / "function.sft.jsonl"
    convs = []
    for t, ep in zip(tasks, episodes, strict=True):
        task_prompt, info = make("function", task=t).reset(seed=0)
        convs.append(episode_to_conversation(ep, system_prompt=info["system_prompt"], task_prompt=task_prompt))
    write_jsonl_atomic(path, convs)
    return path, episodes


@pytest.fixture(scope="module")
def tiny_dir(tok, tmp_path_factory) -> Path:
    """A tiny random Llama over the SmolLM2 vocabulary, saved as a checkpoint directory."""
    path = tmp_path_factory.mktemp("tiny-base")
    tiny_model(tok).save_pretrained(path)
    tok.save_pretrained(path)
    return path


def config(data: Path, model: Path, out: Path, max_length: int = 640, **train) -> SFTRunConfig:
    """A tiny run: conversations cut after their first turn (the 554-token prompt + ~90), 12 steps."""
    train = {"max_steps": 12, "learning_rate": 1e-2, "warmup_ratio": 0.0, "lr_scheduler_type": "constant",
             "logging_steps": 1, "save_steps": 6, **train}
    return build_config(SFTRunConfig, {"model": {"path": str(model)},
                                       "data": {"train": str(data), "max_length": max_length},
                                       "train": train, "output_dir": str(out)})


def assistant_texts(ep: Episode) -> list[str]:
    """What the policy writes each turn, as the agents render it, closed by the end-of-turn token."""
    return [tool_call_text(t.choice, t.content, t.think) + "<|im_end|>" for t in ep.turns]


# ---- (a) the template marks exactly the assistant tokens ----------------------------------------------
@pytest.mark.parametrize("name", ["chatml-tools", "qwen3"])
def test_template_masks_exactly_the_assistant_turns(tok, solved, name):
    path, episodes = solved
    conv = json.loads(path.read_text().splitlines()[0])
    ex = to_example(conv)
    out = tok.apply_chat_template(ex["messages"], tools=json.loads(ex["tools"]), chat_template=CHAT_TEMPLATES[name],
                                  tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    ids, mask = out["input_ids"], out["assistant_masks"]
    masked = [tok.decode(ids[s:e]) for s, e in mask_spans(mask)]
    # content + tool call + <|im_end|> of every turn, and nothing of the system, user or tool turns
    assert masked == assistant_texts(episodes[0])
    assert tok.decode(ids[-1:]) == "\n" and mask[-1] == 0


# ---- (b) + (c): through TRL's data path, the tokens are those the rollout engine feeds ------------------
def test_trl_tokens_are_the_engine_pieces(tok, solved, tiny_dir, tmp_path):
    """TRL's tokenisation = prompt + each generation + each observation segment, as the engine builds them."""
    path, episodes = solved
    trainer = build_trainer(config(path, tiny_dir, tmp_path / "run", max_length=4096))
    data = trainer.train_dataset
    assert len(data) == N_CONVERSATIONS
    r = ChatRenderer(tok, "chatml-tools")
    tasks = load_tasks("function", split="train")
    for k, ep in enumerate(episodes):
        task_prompt, info = make("function", task=tasks[k]).reset(seed=0)
        ids, policy = r.encode(r.prompt_text(info["system_prompt"], task_prompt)), []
        for i, (turn, text) in enumerate(zip(ep.turns, assistant_texts(ep), strict=True)):
            start = len(ids)
            ids += r.encode(text.removesuffix("<|im_end|>"))  # what the policy generates, tokenised alone
            policy.append((start, len(ids) + 1))              # + the end-of-turn token
            if i + 1 < len(ep.turns):
                ids += r.encode(r.observation_text(turn.feedback, policy_ended_turn=False))
        ids += r.encode(r.end_text)
        assert data[k]["input_ids"] == ids
        labels = data[k]["labels"]
        assert mask_spans([int(x != -100) for x in labels]) == policy
        assert all(labels[i] == ids[i] for s, e in policy for i in range(s, e))


@pytest.mark.slow
def test_engine_replays_the_sft_tokens(tok, solved, tiny_dir, tmp_path):
    """Forced to generate the SFT tokens, the engine plays the solver's episode on exactly that sequence."""
    path, episodes = solved
    data = build_trainer(config(path, tiny_dir, tmp_path / "run", max_length=4096)).train_dataset
    ids, labels = data[0]["input_ids"], data[0]["labels"]

    def force(contexts, logits):  # the policy may only write the next SFT token
        out = torch.full_like(logits, -1e9)
        for r, ctx in enumerate(contexts):
            out[r, ids[len(ctx)]] = 0.0
        return out

    model, tok2 = load_model(str(tiny_dir))
    engine = RolloutEngine(model, tok2, EngineConfig(temperature=0.0, chat_template="chatml-tools",
                                                     max_new_tokens_per_turn=400), logits_processor=force)
    (traj,) = engine.run([make("function", task=load_tasks("function", split="train")[0])])
    ep = traj.episode
    assert ep.termination == "solved"
    assert [(t.choice, t.content) for t in ep.turns] == [(t.choice, t.content) for t in episodes[0].turns]
    full = traj.prompt_ids + traj.response_ids
    assert ids[:len(full)] == full and tok.decode(ids[len(full):]) == "<|im_end|>\n"
    # the loss falls on what the policy sampled plus the end-of-turn token the engine appends after
    # each call (it stops at </tool_call>): the model also learns to end its turn
    p = len(traj.prompt_ids)
    policy = [(p + s, p + e) for s, e in traj.turn_spans]
    assert mask_spans([int(x != -100) for x in labels]) == [(s, e + 1) for s, e in policy]
    assert all(ids[e] == engine.renderer.eot_id for _, e in policy)


# ---- (d) a tiny run lowers the loss; its checkpoint reloads and plays; resume; LoRA -----------------------
@pytest.mark.slow
def test_tiny_sft_run_learns_saves_and_resumes(solved, tiny_dir, tmp_path):
    path, _ = solved
    out = tmp_path / "run"
    final = run_sft(config(path, tiny_dir, out))
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert len(losses) == 12
    first, last = sum(losses[:2]) / 2, sum(losses[-2:]) / 2
    assert last < 0.8 * first, (first, last)
    assert load_config(SFTRunConfig, out / "config.yaml").train.max_steps == 12

    # a plain checkpoint whose own template is the one it was trained with: hf:PATH plays it as trained
    assert (final / "config.json").is_file() and not (final / "adapter_config.json").exists()
    tok2 = load_tokenizer(str(final))
    assert chat_template(tok2, "auto") == CHAT_TEMPLATES["chatml-tools"]
    from baorl.rollout.hf import HFPolicy

    policy = HFPolicy(f"hf:{final}", EngineConfig(temperature=0.0, max_new_tokens_per_turn=8))
    (traj,) = policy.rollout([make("function", task=load_tasks("function")[0])])
    assert traj.episode.turns and len(traj.response_ids) >= 1

    # an existing run is never overwritten; --resume continues it from its checkpoint
    with pytest.raises(ValueError, match="already holds a run"):
        run_sft(config(path, tiny_dir, out))
    run_sft(config(path, tiny_dir, out, max_steps=14), resume=True)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "loss" in r] == list(range(1, 15))
    assert [json.loads(x)["event"] for x in (out / "provenance.jsonl").read_text().splitlines()] == ["start", "resume"]


def test_lora_run_saves_merged_weights(solved, tiny_dir, tmp_path):
    path, _ = solved
    cfg = config(path, tiny_dir, tmp_path / "lora", max_steps=2, learning_rate=1e-2)
    cfg.model.lora.enabled, cfg.model.lora.r = True, 4
    final = run_sft(cfg)
    assert not (final / "adapter_config.json").exists()
    base, _ = load_model(str(tiny_dir))
    tuned, _ = load_model(str(final))
    b, t = dict(base.named_parameters()), dict(tuned.named_parameters())
    assert b.keys() == t.keys()
    changed = [k for k in b if not torch.equal(b[k], t[k])]
    assert changed and all("proj" in k for k in changed)  # the adapted linear layers, merged in


# ---- (e) + (f): bad input is reported precisely --------------------------------------------------------
def test_broken_conversation_is_reported_with_its_line(solved, tmp_path, capsys):
    path, _ = solved
    lines = path.read_text().splitlines()
    broken = json.loads(lines[1])
    broken["messages"][2]["tool_calls"][0]["function"]["arguments"] = "{choice: action"
    bad = tmp_path / "bad.sft.jsonl"
    bad.write_text("\n".join([lines[0], lines[2], json.dumps(broken)]) + "\n")
    with pytest.raises(ValueError, match=r"bad\.sft\.jsonl:3: .*not JSON"):
        build_dataset(str(bad))
    cfg = tmp_path / "sft.yaml"
    cfg.write_text(f"data: {{train: {bad}}}\noutput_dir: {tmp_path / 'out'}\n")
    assert main(["sft", str(cfg)]) == 2
    assert "bad.sft.jsonl:3:" in capsys.readouterr().err


def test_unknown_config_key_is_named(tmp_path, capsys):
    cfg = tmp_path / "sft.yaml"
    cfg.write_text("data: {train: x.jsonl}\ntrain: {lrr: 1.0e-5}\n")
    with pytest.raises(ConfigError, match=r"train\.lrr: Extra inputs"):
        load_config(SFTRunConfig, cfg)
    cfg.write_text("data: {train: x.jsonl}\n")
    assert main(["sft", str(cfg), "--set", "model.lora.rank=8"]) == 2
    assert "model.lora.rank" in capsys.readouterr().err
    # a key of the old SFT vocabulary is refused with its new name
    assert main(["sft", str(cfg), "--set", "lora.enabled=true", "--set", "train.scheduler=linear"]) == 2
    err = capsys.readouterr().err
    assert "lora: renamed to model.lora" in err and "train.scheduler: renamed to train.lr_scheduler_type" in err


def test_template_without_generation_markers_is_refused(tok):
    with pytest.raises(ConfigError, match="generation"):
        training_template(tok, CHAT_TEMPLATES["chatml-tools"].replace("{% generation %}", "").replace(
            "{% endgeneration %}", ""))


@pytest.mark.parametrize("name", ["sft-embedded", "sft-qwen3-1.7b", "sft-qwen3-4b"])
def test_presets_parse(name):
    cfg = load_config(SFTRunConfig, CONFIGS / f"{name}.yaml")
    assert cfg.data.train and cfg.train.epochs > 0
    if "qwen3" in name:  # the paper's SFT setting (spec: bao.md §2)
        t = cfg.train
        assert (cfg.model.lora.enabled, t.learning_rate, t.lr_scheduler_type, t.warmup_ratio, t.epochs) == (
            False, 1e-5, "cosine", 0.1, 3.0)
        assert cfg.model.chat_template == "qwen3" and t.bf16 is not False
