"""`baorl quickstart`: the whole BAO pipeline at small scale, on the embedded default, on a laptop CPU.

Stages (each skipped when its output is already there, so an interrupted quickstart continues):

1. teacher data: the Function solver plays the embedded training tasks with the budget schedule
   (`baorl teach --deadline 4 --probes 1-2 --concise --keep all`, as the embedded-tier experiment);
2. SFT warm start: SmolLM2-135M-Instruct fine-tuned on the solver's conversations (`baorl sft`);
3. BAO RL and the UserRL baseline, both from that SFT checkpoint, same budget and seed (`baorl train`);
4. evaluation of base, SFT, baseline and BAO (and the teacher, for reference) on held-out Function
   test tasks, greedy (`baorl eval`);
5. the comparison report with the Pareto frontier (`baorl compare`).

Measured idle on 2 cores: 16.8 min with bf16 units, 25.5 min on an AVX2-only CPU (fp32; see the
README); at this scale the RL stage demonstrates the pipeline, it is not a result.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console()


# The teacher's budget schedule (README "Budget schedule"): plan for 4 turns, answer after 1-2 probes,
# stop after a late rejected answer, concise think text. Its stops are kept (keep="all"): they teach
# the student to end an episode inside the budget instead of answering until the budget runs out.
TEACHER_SCHEDULE: dict[str, Any] = {"deadline": 4, "probes": (1, 2), "concise": True}


@dataclass
class Sizes:
    """How much work each stage does (the defaults: 25.5 min measured on 2 idle AVX2 cores; see the README)."""

    sft_steps: int = 30
    rl_steps: int = 1
    rl_tasks: int = 1
    rl_rollouts: int = 4
    eval_tasks: int = 8
    max_response_tokens: int = 768
    max_new_tokens_per_turn: int = 192


def _stage(name: str, done: bool, fn: Callable[[], Any], timings: dict[str, float]) -> Any:
    if done:
        console.print(f"[dim]· {name}: already done, skipped[/]")
        timings[name] = 0.0
        return None
    console.rule(f"[bold]{name}")
    t0 = time.perf_counter()
    out = fn()
    timings[name] = time.perf_counter() - t0
    console.print(f"[green]✓[/] {name} in {timings[name]:.0f} s")
    return out


def _sft_config(out: Path, data: Path, steps: int) -> Any:
    from baorl.config import build_config
    from baorl.train.sft import SFTRunConfig

    return build_config(SFTRunConfig, {
        "model": {"path": "embedded", "chat_template": "chatml-tools"},
        "data": {"train": [str(data)], "max_length": 2048},
        "train": {"learning_rate": 5e-5, "max_steps": steps, "per_device_train_batch_size": 1,
                  "gradient_accumulation_steps": 1, "lr_scheduler_type": "cosine", "warmup_ratio": 0.1,
                  "use_cpu": True, "logging_steps": 5, "save_steps": max(steps, 1)},
        "output_dir": str(out),
    })


def _rl_config(out: Path, start: Path, sizes: Sizes, *, baseline: bool) -> Any:
    from baorl.config import build_config
    from baorl.train.config import TrainConfig

    bao = ({"penalties": False, "score": "mean", "credit": "equalized"} if baseline
           else {"penalties": True, "score": "sum", "credit": "r2g"})
    return build_config(TrainConfig, {
        "name": "userrl" if baseline else "bao", "output_dir": str(out),
        "model": {"path": str(start), "chat_template": "chatml-tools"},
        "data": {"gym": "function", "max_val_tasks": sizes.eval_tasks},
        "rollout": {"max_response_tokens": sizes.max_response_tokens,
                    "max_new_tokens_per_turn": sizes.max_new_tokens_per_turn, "batch_size": 16},
        "bao": bao,
        "train": {"tasks_per_step": sizes.rl_tasks, "rollouts_per_task": sizes.rl_rollouts, "micro_batch_size": 2,
                  "max_steps": sizes.rl_steps, "learning_rate": 1e-5, "val_every": 0, "val_at_start": False, "val_at_end": False,
                  "save_steps": 1, "report_to": [], "seed": 0},
    })


def run_quickstart(out: Path, n: int | None = None, sizes: Sizes | None = None) -> int:
    """Run the pipeline into `out`; `n` overrides the number of evaluation tasks."""
    from baorl.evaluation import evaluate, load_run, write_report
    from baorl.teach.run import teach, teach_paths
    from baorl.train.run import run_train
    from baorl.train.sft import run_sft

    sizes = sizes or Sizes()
    if n is not None:
        sizes.eval_tasks = n
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    teach_out = out / "teach" / "function.jsonl"
    sft_dir, bao_dir, base_dir = out / "sft", out / "bao", out / "userrl"

    _stage("1. teacher data (Function solver, embedded training split)",
           teach_paths(teach_out)["sft"].exists(),
           lambda: console.print(teach(gym="function", teacher="function-solver", out=teach_out, keep="all",
                                         teacher_options=TEACHER_SCHEDULE).line()), timings)
    _stage(f"2. SFT warm start (SmolLM2-135M, {sizes.sft_steps} steps)", (sft_dir / "model").exists(),
           lambda: run_sft(_sft_config(sft_dir, teach_paths(teach_out)["sft"], sizes.sft_steps)), timings)
    for name, run_dir, baseline in (("3a. BAO RL", bao_dir, False), ("3b. UserRL-baseline RL", base_dir, True)):
        _stage(f"{name} ({sizes.rl_steps} steps of {sizes.rl_tasks} tasks x {sizes.rl_rollouts} rollouts, "
               "from the SFT checkpoint)", (run_dir / "final").exists(),
               lambda run_dir=run_dir, baseline=baseline: run_train(
                   _rl_config(run_dir, sft_dir / "model", sizes, baseline=baseline),
                   resume=str(run_dir) if (run_dir / "config.yaml").exists() else None), timings)

    agents = [("teacher (function-solver, scheduled)", "scripted:function-solver", "teacher"),
              ("base SmolLM2-135M", "hf:embedded", "base"),
              ("SFT", f"hf:{sft_dir / 'model'}", "sft"),
              ("UserRL baseline", f"hf:{base_dir / 'final'}", "userrl"),
              ("BAO", f"hf:{bao_dir / 'final'}", "bao")]
    metrics: dict[str, dict[str, Any]] = {}

    def run_evals() -> None:
        for label, agent, key in agents:
            console.print(f"evaluating {label} ({agent}) on {sizes.eval_tasks} Function test tasks")
            metrics[label] = evaluate(agent, "function", out / "eval" / key, split="test", limit=sizes.eval_tasks,
                                      agent_options=TEACHER_SCHEDULE if key == "teacher" else None,
                                      engine_options={"batch_size": 16,
                                                      "max_response_tokens": sizes.max_response_tokens,
                                                      "max_new_tokens_per_turn": sizes.max_new_tokens_per_turn},
                                      report=False)

    _stage("4. evaluation (greedy, held-out Function test tasks)", False, run_evals, timings)
    report_path = out / "report.html"
    _stage("5. comparison report", False, lambda: write_report(
        [load_run(out / "eval" / key) for _, _, key in agents], report_path,
        title="baorl quickstart: teacher, base, SFT, UserRL baseline and BAO on Function"), timings)

    table = Table(title=f"Function test split, first {sizes.eval_tasks} tasks, greedy (95% bootstrap CIs)")
    for col in ("agent", "n", "score", "Pass@U-1", "Pass@U-3", "user rate", "hypervolume"):
        table.add_column(col, justify="left" if col == "agent" else "right")
    for label, m in metrics.items():
        g = m["gyms"]["function"]

        def ci(key: str, g: dict = g) -> str:
            lo, hi = g.get(f"{key}_ci", [None, None])
            return f"{g[key]:.3f} [{lo:.2f}, {hi:.2f}]" if lo is not None else f"{g[key]:.3f}"

        p = g["pass_at_u"]
        table.add_row(label, str(g["n"]), ci("score"), f"{p.get('1', 0):.3f}", f"{p.get('3', 0):.3f}",
                      f"{g['user_rate']:.3f}", f"{g['hypervolume']:.3f}")
    console.print(table)
    total = time.perf_counter() - t_start
    console.print("stage times: " + " · ".join(f"{k.split(' ')[0]} {v:.0f} s" for k, v in timings.items())
                  + f" · total {total / 60:.1f} min", highlight=False)
    console.print(f"report: [bold]{report_path}[/]  (open it in a browser; Pareto plot: "
                  f"{report_path.with_name('report-pareto.png')})")
    return 0
