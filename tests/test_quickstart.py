"""The quickstart's whole pipeline at toy sizes: every stage runs, writes what the next one reads, and a
rerun skips the finished stages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from baorl.cli.quickstart import Sizes, run_quickstart

TOY = dict(sft_steps=2, rl_steps=1, rl_tasks=1, rl_rollouts=2, eval_tasks=2, max_response_tokens=200,
           max_new_tokens_per_turn=48)


@pytest.mark.slow
def test_quickstart_pipeline_end_to_end(tmp_path: Path, capsys) -> None:
    out = tmp_path / "qs"
    assert run_quickstart(out, sizes=Sizes(**TOY)) == 0
    for f in ("teach/function.sft.jsonl", "sft/model/config.json", "bao/final/config.json",
              "userrl/final/config.json", "report.html", "report-pareto.png"):
        assert (out / f).exists(), f
    for key in ("teacher", "base", "sft", "userrl", "bao"):
        m = json.loads((out / "eval" / key / "metrics.json").read_text())
        assert m["gyms"]["function"]["n"] == 2
    teacher = json.loads((out / "eval" / "teacher" / "metrics.json").read_text())
    assert teacher["gyms"]["function"]["score"] == 1.0
    text = " ".join(capsys.readouterr().out.split())
    assert "BAO" in text and "UserRL baseline" in text and "report:" in text
    # a rerun skips every training stage (nothing is retrained) and re-evaluates from the records
    assert run_quickstart(out, sizes=Sizes(**TOY)) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert text.count("already done, skipped") == 4
