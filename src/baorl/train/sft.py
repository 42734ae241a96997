"""Supervised warm start (spec: bao.md §2): fine-tune a policy on teacher conversations with TRL's `SFTTrainer`.

The input is an SFT file (JSONL, one conversation per line; written by `baorl teach`, read and
validated by `baorl.teach.export.read_sft_file`)::

    {"messages": [{"role": "system", ...}, {"role": "user", "content": TASK},
                  {"role": "assistant", "content": "<think>…</think>",
                   "tool_calls": [{"type": "function", "function": {"name": "interact_with_env",
                                   "arguments": "{\\"choice\\": \\"action\\", \\"content\\": \\"1 2 3 4\\"}"}}]},
                  {"role": "tool", "content": FEEDBACK}, …],
     "tools": [INTERACT_TOOL], "meta": {…}}

Train and play render a conversation the same way. The conversations are tokenised by TRL with
the chat template the rollout engine plays the policy with (`baorl.models.templates`: its
``{% generation %}`` markers give TRL's ``assistant_only_loss`` its mask), so the model is trained
on exactly the token sequence the engine will feed it, and the loss falls on exactly what the
policy generates: each assistant turn's content, its tool call and the end-of-turn token.

Decided here:

- a tool call's ``arguments`` are re-serialised with ``json.dumps`` (what
  `baorl.agents.tool_call_text` writes), so a teacher's spacing or key quoting never teaches a
  format the agents do not use;
- the tool schemas go to TRL as one JSON string per row (TRL reads that form), which keeps them
  byte-exact through Arrow; ``meta`` is not needed for training and is dropped;
- the config shares the RL config's vocabulary and sections (`baorl.train.config.ModelSection`,
  with ``model.lora``, and `baorl.train.config.OptimSection`: TRL's key names);
- mixed precision (``train.bf16``, default ``auto``) is bf16 autocast where the device has bf16
  units (a bf16 GPU, a CPU with AMX/AVX512-BF16: `baorl.models.precision`) and off otherwise;
  weights are trained in ``model.dtype`` (in float32, AdamW's small updates are not rounded away
  as they are in bfloat16 weights);
- the final model is written as a plain transformers directory (LoRA merged into the weights),
  with the tokenizer and the chat template it was trained with, so ``hf:OUTPUT/model``, the
  rollout engine and the RL trainer load it directly.

Output directory: ``config.yaml`` (resolved config), ``metrics.jsonl`` (one line per logging
step: loss, learning rate, grad norm, token accuracy …), ``checkpoints/`` (trainer state, for
``--resume``) and ``model/`` (the final checkpoint).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from baorl.config import ConfigError, StrictModel, save_config
from baorl.models.precision import resolve_bf16
from baorl.train.config import LoraSection, ModelSection, OptimSection, use_cuda

__all__ = [
    "SFTModelSection", "DataSection", "LoraSection", "TrainSection", "SFTRunConfig",
    "to_example", "build_dataset", "training_template", "build_trainer", "run_sft",
]

log = logging.getLogger(__name__)


# ---- configuration --------------------------------------------------------------------------------
class SFTModelSection(ModelSection):
    """The model to fine-tune (`ModelSection`: path, dtype, chat template, LoRA) and how to save it."""

    save_dtype: Literal["float32", "bfloat16", "float16"] | None = Field(
        None, description="dtype of the saved final model (null: as trained)")


class DataSection(StrictModel):
    """The SFT files."""

    train: list[str] = Field(..., min_length=1, description="SFT JSONL file(s) to train on")
    eval: str | None = Field(None, description="optional SFT JSONL file for an evaluation loss")
    max_length: int = Field(2048, ge=16, description="tokens per conversation; longer ones are cut at the end")

    @field_validator("train", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


class TrainSection(OptimSection):
    """Optimisation (`OptimSection`'s keys, SFT's defaults; passed to `trl.SFTConfig`)."""

    learning_rate: float = Field(1e-5, gt=0)
    epochs: float = Field(3.0, gt=0, description="passes over the data (ignored with max_steps)")
    per_device_train_batch_size: int = Field(1, ge=1, description="conversations per device per forward pass")
    gradient_accumulation_steps: int = Field(1, ge=1, description="forward passes per optimizer step")
    lr_scheduler_type: str = Field("cosine", description="transformers scheduler (cosine, linear, constant, …)")
    warmup_ratio: float = Field(0.1, ge=0.0, lt=1.0, description="fraction of the steps with linear warm-up")
    weight_decay: float = Field(0.0, ge=0.0)
    logging_steps: int = Field(1, ge=1)
    save_steps: int = Field(50, ge=1, description="checkpoint (for --resume) every this many steps")
    save_total_limit: int | None = Field(1, ge=1, description="checkpoints kept (null: all)")
    eval_steps: int | None = Field(None, ge=1, description="evaluate every this many steps (null: each epoch)")
    optim: str = Field("adamw_torch", description="transformers optimizer name")


class SFTRunConfig(StrictModel):
    """`baorl sft CONFIG`: the supervised warm start."""

    model: SFTModelSection = Field(default_factory=SFTModelSection)
    data: DataSection
    train: TrainSection = Field(default_factory=TrainSection)
    output_dir: str = Field("runs/sft", description="where config, metrics, checkpoints and model/ go")


# ---- data -----------------------------------------------------------------------------------------
def _canonical_arguments(args: Any) -> str:
    """Tool-call arguments as `baorl.agents.tool_call_text` writes them.

    >>> _canonical_arguments('{"choice":"action","content":"1 2 3 4"}')
    '{"choice": "action", "content": "1 2 3 4"}'
    """
    return json.dumps(json.loads(args) if isinstance(args, str) else args)


def to_example(conversation: dict[str, Any]) -> dict[str, Any]:
    """One SFT-file conversation as a row TRL's conversational path takes: ``messages`` and ``tools``.

    >>> ex = to_example({"messages": [{"role": "user", "content": "go"}, {"role": "assistant", "content": "<think>x</think>",
    ...     "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {"a": 1}}}]}], "meta": {}})
    >>> ex["messages"][1]["tool_calls"][0]["function"]["arguments"], ex["tools"]
    ('{"a": 1}', 'null')
    """
    messages = []
    for m in conversation["messages"]:
        msg = {"role": m["role"], "content": m.get("content") or ""}
        if m.get("reasoning_content"):
            msg["reasoning_content"] = m["reasoning_content"]
        if m.get("tool_calls"):
            msg["tool_calls"] = [
                {"type": "function", "function": {"name": c["function"]["name"],
                                                  "arguments": _canonical_arguments(c["function"]["arguments"])}}
                for c in m["tool_calls"]
            ]
        messages.append(msg)
    return {"messages": messages, "tools": json.dumps(conversation.get("tools"))}


def build_dataset(paths: list[str] | str) -> Any:
    """A `datasets.Dataset` of `to_example` rows from one or more SFT files."""
    from datasets import Dataset

    from baorl.gyms.tool import INTERACT_TOOL
    from baorl.teach.export import read_sft_file

    # read_sft_file validates: a broken conversation raises ValueError naming path:line
    rows = [to_example(c) for p in ([paths] if isinstance(paths, str) else paths) for c in read_sft_file(p)]
    other_tools = sum(r["tools"] != json.dumps([INTERACT_TOOL]) for r in rows)
    if other_tools:
        log.warning("%d of %d conversations list other tools than [interact_with_env]; the rollout engine "
                    "renders [interact_with_env], so the policy will see a different system turn", other_tools, len(rows))
    return Dataset.from_list(rows)


# ---- chat template --------------------------------------------------------------------------------
def training_template(tokenizer: Any, name: str) -> str:
    """The chat template `name` (or Jinja source) after checking that SFT can train with it as the engine plays it.

    It must keep the rollout engine's prefix property (`baorl.rollout.render.ChatRenderer`) and mark
    the assistant's part with ``{% generation %}``; baorl's ``chatml-tools`` and ``qwen3`` do both.
    """
    from trl.chat_template_utils import has_generation_markers

    from baorl.models.templates import chat_template
    from baorl.rollout.render import ChatRenderer

    template = name if "{%" in name else chat_template(tokenizer, name)
    ChatRenderer(tokenizer, template)  # raises TemplateError (a ValueError) naming the problem
    if not has_generation_markers(template):
        raise ConfigError(f"model.chat_template: {name!r} has no {{% generation %}} markers, so the assistant "
                          "tokens cannot be told apart; use chatml-tools or qwen3")
    return template


# ---- the run --------------------------------------------------------------------------------------
def _metrics_callback(path: Path) -> Any:
    from transformers import TrainerCallback

    from baorl.records import append_jsonl

    class _Metrics(TrainerCallback):
        """Append every log record (train loss per logging step, eval loss, the final summary)."""

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kw: Any) -> None:
            if state.is_world_process_zero and logs:
                append_jsonl(path, [{"step": state.global_step, **logs}])

    return _Metrics()


def _sft_args(cfg: SFTRunConfig, out: Path, *, cuda: bool, has_eval: bool) -> Any:
    from trl import SFTConfig

    t = cfg.train
    bf16 = resolve_bf16(t.bf16, "cuda" if cuda else "cpu", what="SFT updates")
    eval_kw: dict[str, Any] = {}
    if has_eval:
        eval_kw = ({"eval_strategy": "steps", "eval_steps": t.eval_steps} if t.eval_steps
                   else {"eval_strategy": "epoch"})
        eval_kw["per_device_eval_batch_size"] = t.per_device_train_batch_size
    return SFTConfig(
        output_dir=str(out / "checkpoints"),
        # data: conversations rendered by the engine's template, loss on assistant tokens only
        assistant_only_loss=True, max_length=cfg.data.max_length, packing=False, dataset_num_proc=None,
        # optimisation
        learning_rate=t.learning_rate, num_train_epochs=t.epochs, max_steps=t.max_steps or -1,
        per_device_train_batch_size=t.per_device_train_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        lr_scheduler_type=t.lr_scheduler_type, warmup_steps=t.warmup_ratio, weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm, optim=t.optim, seed=t.seed, data_seed=t.seed,
        activation_checkpointing=t.gradient_checkpointing, bf16=bf16, fp16=False, use_cpu=not cuda,
        # bookkeeping
        logging_steps=t.logging_steps, logging_first_step=True, save_strategy="steps", save_steps=t.save_steps,
        save_total_limit=t.save_total_limit, report_to="none", **eval_kw,
    )


def _check_output(out: Path, resume: bool | str | None) -> bool | str | None:
    """Refuse to overwrite a run; resolve ``resume=True`` to "the latest checkpoint" (or fail)."""
    ckpts = sorted((out / "checkpoints").glob("checkpoint-*"))
    if resume is None or resume is False:
        if ckpts or (out / "model").exists():
            raise ValueError(f"output_dir {out} already holds a run; continue it with --resume or choose "
                             "another output_dir (--set output_dir=...)")
        return None
    if resume is True:
        if not ckpts:
            raise FileNotFoundError(f"--resume: no checkpoint under {out / 'checkpoints'} to resume from")
        return True
    if not Path(resume).is_dir():
        raise FileNotFoundError(f"--resume: {resume} is not a checkpoint directory")
    return str(resume)


def build_trainer(cfg: SFTRunConfig, *, metrics: Path | None = None) -> Any:
    """The `trl.SFTTrainer` for `cfg`, its datasets tokenised (``trainer.train_dataset`` holds
    ``input_ids`` and ``labels``, -100 outside the assistant tokens) and nothing trained yet.

    `metrics`: a JSONL file each log record is appended to.
    """
    from trl import SFTTrainer

    from baorl.models import load_model

    cuda = use_cuda(cfg.train.use_cpu)
    train_ds = build_dataset(cfg.data.train)
    eval_ds = build_dataset(cfg.data.eval) if cfg.data.eval else None
    model, tok = load_model(cfg.model.path, dtype=cfg.model.dtype)
    tok.chat_template = training_template(tok, cfg.model.chat_template)
    peft_config = cfg.model.lora.peft_config()
    trainer = SFTTrainer(
        model=model, args=_sft_args(cfg, Path(cfg.output_dir), cuda=cuda, has_eval=eval_ds is not None),
        train_dataset=train_ds, eval_dataset=eval_ds, processing_class=tok, peft_config=peft_config,
        callbacks=[_metrics_callback(metrics)] if metrics is not None else None,
    )
    _log_data(trainer.train_dataset, cfg.data.max_length, len(train_ds))
    return trainer


def run_sft(cfg: SFTRunConfig, *, resume: bool | str | None = None) -> Path:
    """Fine-tune `cfg.model` on `cfg.data`; returns the directory of the final model.

    Args:
        cfg: the run configuration.
        resume: ``True`` continues from the latest checkpoint in ``output_dir/checkpoints``, a
            path from that checkpoint (TRL's ``resume_from_checkpoint``); ``None`` starts fresh
            and refuses an ``output_dir`` that already holds a run.
    """
    out = Path(cfg.output_dir)
    resume_from = _check_output(out, resume)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    from baorl.provenance import record_provenance

    record_provenance(out, "start" if resume_from is None else "resume")
    metrics = out / "metrics.jsonl"
    if resume_from is None:
        metrics.write_text("", encoding="utf-8")
    trainer = build_trainer(cfg, metrics=metrics)
    t0 = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume_from)
    log.info("trained in %.0f s", time.perf_counter() - t0)
    return _save_final(trainer, trainer.processing_class, cfg, out / "model")


def _log_data(ds: Any, max_length: int, n_conversations: int) -> None:
    lengths = [len(x) for x in ds["input_ids"]]
    trained = sum(sum(1 for t in labels if t != -100) for labels in ds["labels"])
    cut = sum(n >= max_length for n in lengths)
    log.info("%d conversations (%d kept), %d tokens, %d trained (assistant) tokens, %d cut at max_length=%d",
             n_conversations, len(lengths), sum(lengths), trained, cut, max_length)
    if cut:
        log.warning("%d conversations are longer than data.max_length=%d and lose their last turns", cut, max_length)


def _save_final(trainer: Any, tok: Any, cfg: SFTRunConfig, target: Path) -> Path:
    import torch

    model = trainer.model
    if cfg.model.lora.enabled:
        model = model.merge_and_unload()
    if cfg.model.save_dtype:
        model = model.to(getattr(torch, cfg.model.save_dtype))
    if trainer.args.should_save:
        model.save_pretrained(target)
        tok.save_pretrained(target)  # with the chat template it was trained with: hf:TARGET renders the same
    return target
