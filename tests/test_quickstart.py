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
    # the teacher data is the budget-scheduled solver's, stops kept: every episode is solved or stopped
    # with [finish] inside the 4-turn plan, and both kinds are in the SFT data
    records = [json.loads(x) for x in (out / "teach" / "function.jsonl").read_text().splitlines()]
    ends = {r["termination"] for r in records}
    assert len(records) == 460 and ends == {"solved", "finish"} and max(len(r["turns"]) for r in records) <= 5
    assert len((out / "teach" / "function.sft.jsonl").read_text().splitlines()) == 460
    meta = json.loads((out / "eval" / "teacher" / "episodes.jsonl.meta.json").read_text())
    assert meta["agent"] == "scripted:function-solver" and meta["agent_options"]["deadline"] == 4
    text = " ".join(capsys.readouterr().out.split())
    assert "BAO" in text and "UserRL baseline" in text and "report:" in text
    # a rerun skips every training stage (nothing is retrained) and re-evaluates from the records
    assert run_quickstart(out, sizes=Sizes(**TOY)) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert text.count("already done, skipped") == 4
