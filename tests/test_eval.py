"""`baorl eval`, `baorl score`, `baorl compare`, `baorl report` end to end on scripted agents (offline, fast)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from baorl.cli.main import main
from baorl.evaluation.run import evaluate, load_run
from baorl.gyms import load_tasks
from baorl.records import read_episodes


def flat(text: str) -> str:
    """Console output without whitespace (rich wraps long paths and messages)."""
    return "".join(text.split())


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Exit code, stdout and stderr of `baorl ARGV`, each line break turned into a space."""
    code = main(list(argv))
    out = capsys.readouterr()
    return code, " ".join(out.out.split()), " ".join(out.err.split())


@pytest.fixture(scope="module")
def evals(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two finished evaluations of 4 Function tasks: the solver and the random agent."""
    root = tmp_path_factory.mktemp("evals")
    for name, agent in (("solver", "scripted:function-solver"), ("random", "scripted:random")):
        assert main(["eval", "--agent", agent, "--gym", "function", "--n", "4", "--out", str(root / name),
                     "--bootstrap", "200"]) == 0
    return {"solver": root / "solver", "random": root / "random"}


def test_eval_writes_records_metrics_and_report(evals: dict[str, Path]) -> None:
    tasks = [t.id for t in load_tasks("function", split="test")[:4]]
    solver = evals["solver"]
    eps = read_episodes(solver / "episodes.jsonl")
    assert sorted(e.task_id for e in eps) == sorted(tasks)
    assert {e.policy for e in eps} == {"scripted:function-solver"}
    m = json.loads((solver / "metrics.json").read_text())
    f = m["gyms"]["function"]
    assert f["n"] == 4 and f["score"] == 1.0 and f["pass_at_u"]["1"] == 1.0 and f["hypervolume"] == 1.0
    assert f["score_ci"] == [1.0, 1.0] and m["bootstrap"]["samples"] == 200
    assert m["overall"]["score"] == 1.0
    r = json.loads((evals["random"] / "metrics.json").read_text())["gyms"]["function"]
    assert r["score"] == 0.0 and r["pass_at_u"]["1"] == 0.0 and r["user_rate"] > 0
    cfg = json.loads((solver / "eval.json").read_text())
    assert cfg["agent"] == "scripted:function-solver" and cfg["gyms"] == ["function"] and cfg["split"] == "test"
    for name in ("report.html", "report-pareto.png", "report-pareto.svg"):
        assert (solver / name).stat().st_size > 1000, name


def test_score_equals_eval_metrics(evals: dict[str, Path], tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "score", str(evals["random"]), "--out", str(tmp_path / "m.json"),
                           "--bootstrap", "200")
    assert code == 0 and "Pass@U-1" in out and "user rate" in out
    assert json.loads((tmp_path / "m.json").read_text()) == json.loads((evals["random"] / "metrics.json").read_text())


def test_resume_with_more_tasks_plays_only_the_new_ones(tmp_path: Path) -> None:
    out = tmp_path / "run"
    evaluate("scripted:random", "function", out, limit=3, n_boot=0, report=False)
    played: list[str] = []
    m = evaluate("scripted:random", "function", out, limit=5, n_boot=0, report=False,
                 on_done=lambda e: played.append(e.task_id))
    assert sorted(played) == sorted(t.id for t in load_tasks("function", split="test")[3:5])
    assert m["overall"]["n"] == 5


def test_resume_with_tuple_agent_options(tmp_path: Path) -> None:
    """Agent options read back from the run's JSON identity as lists; a tuple given again is the same run."""
    out, schedule = tmp_path / "run", {"deadline": 4, "probes": (1, 2), "concise": True}
    evaluate("scripted:function-solver", "function", out, limit=1, n_boot=0, report=False, agent_options=schedule)
    played: list[str] = []
    m = evaluate("scripted:function-solver", "function", out, limit=2, n_boot=0, report=False,
                 agent_options=schedule, on_done=lambda e: played.append(e.task_id))
    assert played == [load_tasks("function", split="test")[1].id] and m["overall"]["n"] == 2
    with pytest.raises(ValueError, match="another run's records"):  # a different schedule is another run
        evaluate("scripted:function-solver", "function", out, limit=2, n_boot=0, report=False,
                 agent_options={**schedule, "probes": (2, 2)})


def test_resume_same_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    args = ["eval", "--agent", "scripted:random", "--gym", "function", "--n", "3", "--out", str(out),
            "--bootstrap", "0", "--no-report"]
    assert run_cli(capsys, *args)[0] == 0
    lines = (out / "episodes.jsonl").read_text().splitlines(keepends=True)
    (out / "episodes.jsonl").write_text(lines[0] + lines[1] + lines[2][: len(lines[2]) // 2])
    torn_id = json.loads(lines[2])["task_id"]

    # `baorl score` refuses the torn file, naming it and the line, and says how to finish it
    code, _, err = run_cli(capsys, "score", str(out))
    assert code == 2 and flat(f"{out / 'episodes.jsonl'}:3") in flat(err) and "interrupted" in err

    played: list[str] = []
    m = evaluate("scripted:random", "function", out, limit=3, n_boot=0, report=False,
                 on_done=lambda e: played.append(e.task_id))
    assert played == [torn_id]  # the two finished episodes are not played again
    new_lines = (out / "episodes.jsonl").read_text().splitlines(keepends=True)
    assert new_lines[:2] == lines[:2] and len(new_lines) == 3
    assert m["overall"]["n"] == 3

    # nothing left: the same command plays nothing
    code, printed, _ = run_cli(capsys, *args)
    assert code == 0 and "0 episodes played" in printed
    # every evaluation command that played episodes names the code it ran
    prov = [json.loads(x) for x in (out / "provenance.jsonl").read_text().splitlines()]
    # (the first run played 3, the resume 1, the rerun none: no line)
    assert [(p["event"], p["episodes"]) for p in prov] == [("evaluated", 3), ("evaluated", 1)]
    assert all("commit" in p for p in prov)


def test_resume_refuses_another_evaluation(evals: dict[str, Path], tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "solver"
    shutil.copytree(evals["solver"], out)
    code, _, err = run_cli(capsys, "eval", "--agent", "scripted:random", "--gym", "function", "--n", "4",
                           "--out", str(out))
    assert code == 2 and flat(str(out / "eval.json")) in flat(err) and "another evaluation" in err
    code, _, err = run_cli(capsys, "eval", "--agent", "scripted:function-solver", "--gym", "telepathy", "--n", "2",
                           "--out", str(out))
    assert code == 2 and "another evaluation" in err
    # records of another gym without eval.json: named with their line
    (out / "eval.json").unlink()
    code, _, err = run_cli(capsys, "eval", "--agent", "scripted:random", "--gym", "telepathy", "--n", "2",
                           "--out", str(out))
    assert code == 2 and flat(f"{out / 'episodes.jsonl'}:1") in flat(err) and "'function' record" in err


def test_several_gyms_and_seeds(tmp_path: Path) -> None:
    out = tmp_path / "multi"
    m = evaluate("scripted:random", ["function", "telepathy"], out, limit=2, seeds=[0, 1], n_boot=50, report=False)
    eps = read_episodes(out / "episodes.jsonl")
    assert len(eps) == 8 and {(e.gym, e.seed) for e in eps} == {(g, s) for g in ("function", "telepathy") for s in (0, 1)}
    assert sorted(p.name for p in (out / "parts").glob("*.jsonl")) == [
        "function.seed0.jsonl", "function.seed1.jsonl", "telepathy.seed0.jsonl", "telepathy.seed1.jsonl"]
    assert m["overall"]["weights"] == {"function": 2, "telepathy": 2}
    assert m["gyms"]["telepathy"]["n"] == 4 and m["gyms"]["telepathy"]["n_tasks"] == 2
    assert "score_seed_ci" in m["gyms"]["function"] and "score_seed_ci" in m["overall"]
    # rerun: nothing new, same records
    before = (out / "episodes.jsonl").read_text()
    evaluate("scripted:random", ["function", "telepathy"], out, limit=2, seeds=[0, 1], n_boot=50, report=False,
             on_done=lambda e: pytest.fail(f"replayed {e.task_id}"))
    assert (out / "episodes.jsonl").read_text() == before


def test_bad_input_errors_name_the_file(evals: dict[str, Path], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope"
    code, _, err = run_cli(capsys, "score", str(missing))
    assert code == 2 and flat(str(missing)) in flat(err) and "no such run directory" in err

    empty_dir = tmp_path / "emptydir"
    empty_dir.mkdir()
    code, _, err = run_cli(capsys, "report", str(empty_dir))
    assert code == 2 and "not a run directory" in err and flat(str(empty_dir / "episodes.jsonl")) in flat(err)

    corrupt = tmp_path / "corrupt"
    shutil.copytree(evals["random"], corrupt)
    lines = (corrupt / "episodes.jsonl").read_text().splitlines(keepends=True)
    (corrupt / "episodes.jsonl").write_text("".join([lines[0], "{not json\n", *lines[2:]]))
    code, _, err = run_cli(capsys, "score", str(corrupt))
    assert code == 2 and flat(f"{corrupt / 'episodes.jsonl'}:2") in flat(err)

    (corrupt / "episodes.jsonl").write_text("")
    code, _, err = run_cli(capsys, "compare", str(evals["solver"]), str(corrupt), "--out", str(tmp_path / "r.html"))
    assert code == 2 and "no episode records" in err and flat(str(corrupt / "episodes.jsonl")) in flat(err)

    dup = tmp_path / "dup"
    shutil.copytree(evals["random"], dup)
    (dup / "episodes.jsonl").write_text(lines[0] + lines[0])
    code, _, err = run_cli(capsys, "score", str(dup))
    assert code == 2 and "records 1 and 2" in err and flat(str(dup / "episodes.jsonl")) in flat(err)

    empty_split = tmp_path / "empty.json"
    empty_split.write_text("[]")
    out = tmp_path / "never"
    code, _, err = run_cli(capsys, "eval", "--agent", "scripted:random", "--gym", "function", "--data",
                           str(empty_split), "--out", str(out))
    assert code == 2 and flat(str(empty_split)) in flat(err) and not out.exists()


def test_compare_and_mixed_gyms(evals: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    report = tmp_path / "cmp" / "report.html"
    code, out, _ = run_cli(capsys, "compare", str(evals["solver"]), str(evals["random"]), "--out", str(report),
                           "--bootstrap", "100")
    assert code == 0 and "frontier" in out and flat(str(report)) in flat(out)
    for name in ("report.html", "report-pareto.png", "report-pareto.svg"):
        assert (report.parent / name).stat().st_size > 1000
    page = report.read_text()
    assert "solver" in page and "random" in page and "Pareto frontier" in page

    tele = tmp_path / "tele"
    evaluate("scripted:random", "telepathy", tele, limit=2, n_boot=0, report=False)
    code, _, err = run_cli(capsys, "compare", str(evals["solver"]), str(tele), "--out", str(tmp_path / "x.html"))
    assert code == 2 and flat(str(tele / "episodes.jsonl")) in flat(err) and "same gyms" in err
    assert not (tmp_path / "x.html").exists()

    code, _, err = run_cli(capsys, "compare", str(evals["solver"]), "--out", str(tmp_path / "y.html"))
    assert code == 2 and "at least two" in err


def test_training_run_directory(evals: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "train-run"
    (run / "val" / "step_000010").mkdir(parents=True)
    (run / "val" / "step_000020").mkdir(parents=True)
    shutil.copy(evals["solver"] / "episodes.jsonl", run / "val" / "step_000010" / "episodes.jsonl")
    shutil.copy(evals["random"] / "episodes.jsonl", run / "val" / "step_000020" / "episodes.jsonl")
    rows = [{"step": s, "time": s * 1.5, "loss": 2.0 / s, "reward/mean": 0.1 * s, "note": "text"} for s in range(1, 21)]
    rows[9]["val/score"] = 1.0
    rows[19]["val/score"] = 0.0
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 21, "lo')  # torn tail

    latest, best = load_run(run), load_run(run, val="best")
    assert latest.kind == "train" and latest.info == {"val_step": 20} and len(latest.train_metrics) == 20
    assert best.info == {"val_step": 10} and load_run(run, val="10").info == {"val_step": 10}
    with pytest.raises(ValueError, match="no validation step '7'"):
        load_run(run, val="7")

    code, out, _ = run_cli(capsys, "report", str(run), "--bootstrap", "0")
    assert code == 0
    assert (run / "report.html").is_file() and (run / "report-training.png").stat().st_size > 1000
    assert "Training curves" in (run / "report.html").read_text()

    # an SFT run: curves only, no validation records
    sft = tmp_path / "sft"
    sft.mkdir()
    (sft / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 1 / s}) + "\n" for s in range(1, 5)))
    code, _, _ = run_cli(capsys, "report", str(sft))
    assert code == 0 and (sft / "report-training.svg").is_file() and not (sft / "report-pareto.png").exists()
    (sft / "metrics.jsonl").write_text('{"step": 1}\n[1, 2]\n{"step": 3}\n')
    code, _, err = run_cli(capsys, "report", str(sft))
    assert code == 2 and flat(f"{sft / 'metrics.jsonl'}:2") in flat(err)


def test_local_model_and_endpoint_agents(tmp_path: Path) -> None:
    """hf:PATH (the batched engine) and openai:MODEL (a `baorl serve` app) both evaluate greedily."""
    from baorl.models import chat_template, load_model, load_tokenizer, tiny_model
    from baorl.serve.app import BackgroundServer, create_app
    from baorl.serve.engine import Engine

    tok = load_tokenizer("embedded")
    ckpt = tmp_path / "tiny"
    tiny_model(tok).save_pretrained(ckpt)
    tok.save_pretrained(ckpt)

    local = evaluate(f"hf:{ckpt}", "function", tmp_path / "hf", limit=2, n_boot=0, report=False,
                     engine_options={"max_new_tokens_per_turn": 6, "batch_size": 2})
    eps = read_episodes(tmp_path / "hf" / "episodes.jsonl")
    assert local["overall"]["n"] == 2 and {e.policy for e in eps} == {f"hf:{ckpt}"}
    assert all(0 < t.completion_tokens <= 6 for e in eps for t in e.turns)
    assert json.loads((tmp_path / "hf" / "eval.json").read_text())["temperature"] == 0.0
    # resuming with another batch size is the same evaluation (nothing left to play)
    evaluate(f"hf:{ckpt}", "function", tmp_path / "hf", limit=2, n_boot=0, report=False,
             engine_options={"max_new_tokens_per_turn": 6, "batch_size": 1},
             on_done=lambda e: pytest.fail("replayed"))

    model, tok2 = load_model(str(ckpt))
    with BackgroundServer(create_app(Engine(model, tok2, max_batch=2), chat_template(tok2, "auto"), "tiny")) as srv:
        remote = evaluate("openai:tiny", "function", tmp_path / "api", limit=2, n_boot=0, report=False,
                          agent_options={"base_url": srv.base_url, "max_tokens": 6, "max_retries": 0})
    eps = read_episodes(tmp_path / "api" / "episodes.jsonl")
    assert remote["overall"]["n"] == 2 and {e.policy for e in eps} == {"openai:tiny"}
    assert json.loads((tmp_path / "api" / "eval.json").read_text())["temperature"] == 0.0


def test_cli_episode_budget_options_reach_the_engine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`--max-prompt-tokens/--max-response-tokens` set the episode budget of `baorl eval` and `baorl rollout`."""
    from baorl.models import load_tokenizer, tiny_model

    tok = load_tokenizer("embedded")
    ckpt = tmp_path / "tiny"
    tiny_model(tok).save_pretrained(ckpt)
    tok.save_pretrained(ckpt)
    code, _, err = run_cli(capsys, "eval", "--agent", f"hf:{ckpt}", "--gym", "function", "--out", str(tmp_path / "e"),
                           "--n", "2", "--bootstrap", "0", "--no-report", "--max-new-tokens", "50",
                           "--max-response-tokens", "9")
    assert code == 0, err
    saved = json.loads((tmp_path / "e" / "eval.json").read_text())["engine_options"]
    assert saved == {"max_new_tokens_per_turn": 50, "max_response_tokens": 9}
    eps = read_episodes(tmp_path / "e" / "episodes.jsonl")
    assert [e.termination for e in eps] == ["token_budget"] * 2  # the untrained model never stops in 9 tokens
    assert all(sum(t.completion_tokens for t in e.turns) == 9 for e in eps)
    # a prompt budget below the Function prompt ends every episode before it starts
    code, _, err = run_cli(capsys, "rollout", "--agent", f"hf:{ckpt}", "--gym", "function", "--n", "1",
                           "--out", str(tmp_path / "r.jsonl"), "--max-prompt-tokens", "50")
    assert code == 0, err
    (ep,) = read_episodes(tmp_path / "r.jsonl")
    assert ep.termination == "token_budget" and ep.turns == []


# ---- failed starts, odd names, size caps ---------------------------------------------------------
def test_a_failed_start_leaves_nothing_that_refuses_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "runs" / "e"
    code, _, err = run_cli(capsys, "eval", "--agent", "scripted:nope", "--gym", "function", "--n", "2", "--out",
                           str(out), "--bootstrap", "0", "--no-report")
    assert code == 2 and "unknown scripted agent" in err
    assert not (out / "eval.json").exists()
    # a model path that does not exist fails when the model loads, after the directory was made
    code, _, err = run_cli(capsys, "eval", "--agent", f"hf:{tmp_path / 'no-model'}", "--gym", "function", "--n", "2",
                           "--out", str(out), "--bootstrap", "0", "--no-report")
    assert code == 2 and "no-model" in err
    assert not (out / "eval.json").exists() and not (tmp_path / "runs").exists()
    # an endpoint that refuses connections fails on the first episode
    with pytest.raises(Exception, match="failed after 1 attempt"):
        evaluate("openai:m", "function", out, limit=2, n_boot=0, report=False,
                 agent_options={"base_url": "http://127.0.0.1:9/v1", "max_retries": 0})
    assert not (out / "eval.json").exists()
    # the corrected command runs
    code, _, err = run_cli(capsys, "eval", "--agent", "scripted:random", "--gym", "function", "--n", "2", "--out",
                           str(out), "--bootstrap", "0", "--no-report")
    assert code == 0, err
    assert json.loads((out / "eval.json").read_text())["agent"] == "scripted:random"


def test_a_resumed_run_keeps_its_eval_json_when_a_later_start_fails(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "e"
    evaluate("scripted:random", "function", out, limit=1, n_boot=0, report=False)
    saved = (out / "eval.json").read_text()

    def down(**kw: object) -> None:
        raise ConnectionError("endpoint down")

    monkeypatch.setattr("baorl.runs.runner.run_rollout", down)
    with pytest.raises(ConnectionError):
        evaluate("scripted:random", "function", out, limit=2, n_boot=0, report=False)
    assert (out / "eval.json").is_file() and (out / "episodes.jsonl").is_file()
    # a fresh directory that holds records of an earlier run without eval.json keeps the new eval.json too
    (out / "eval.json").unlink()
    with pytest.raises(ConnectionError):
        evaluate("scripted:random", "function", out, limit=2, n_boot=0, report=False)
    assert json.loads((out / "eval.json").read_text()) == {**json.loads(saved), "limit": 2}


def test_dollar_signs_in_run_names_are_plain_text(tmp_path: Path) -> None:
    """matplotlib once parsed `$\\foo$` in a run label as mathtext and crashed after every episode had played."""
    out = tmp_path / "run $\\foo$ $x^$"
    m = evaluate("scripted:random", "function", out, limit=2, n_boot=0, report=True)
    assert m["overall"]["n"] == 2
    assert (out / "report.html").is_file() and (out / "report-pareto.png").stat().st_size > 1000
    assert "run $\\foo$ $x^$" in (out / "report-pareto.svg").read_text()
    rows = [{"step": 1, "$\\bad$": 1.0}, {"step": 2, "$\\bad$": 0.5}]
    (out / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    from baorl.evaluation.report import write_report

    write_report([load_run(out)], tmp_path / "r.html", n_boot=0, title="$\\alpha$ title")
    assert (tmp_path / "r-training.png").is_file()


class Verbose:
    """A text-level agent that writes 2 MB of think and content per turn, then answers."""

    name = "scripted:verbose"

    def start(self, system_prompt: str, task_prompt: str, info: dict) -> dict:
        return {"turn": 0}

    async def arespond(self, observation: str, state: dict) -> tuple[str, dict]:
        from baorl.agents.base import tool_call_text

        state["turn"] += 1
        if state["turn"] == 1:
            return tool_call_text("action", "1 2 3 " + "4" * 2_000_000, "t" * 2_000_000), state
        return tool_call_text("answer", "7", "short"), state


def test_model_text_is_capped_in_records_and_report(tmp_path: Path) -> None:
    import asyncio

    from baorl.evaluation.report import write_report
    from baorl.gyms.function import FunctionGym
    from baorl.records import write_episodes
    from baorl.runs.play import aplay_episode, aplay_many

    task = load_tasks("function", split="test")[0]
    ep = asyncio.run(aplay_episode(FunctionGym(task), Verbose()))  # type: ignore[arg-type]
    first = ep.turns[0]
    assert len(first.think) < 33_000 and first.think.endswith("[truncated: 2,000,000 characters in all, "
                                                               "the first 32,000 kept]")
    assert len(ep.model_dump_json()) < 200_000
    assert ep.turns[1].think == "short"  # short text is untouched
    (whole,) = asyncio.run(aplay_many(FunctionGym, [task], Verbose, max_text_chars=None))  # type: ignore[arg-type]
    assert len(whole.turns[0].think) == 2_000_000
    (small,) = asyncio.run(aplay_many(FunctionGym, [task], Verbose, max_text_chars=100))  # type: ignore[arg-type]
    assert small.turns[0].think == "t" * 100 + " … [truncated: 2,000,000 characters in all, the first 100 kept]"

    write_episodes(tmp_path / "big" / "episodes.jsonl", [whole])
    rep = write_report([load_run(tmp_path / "big")], tmp_path / "report.html", n_boot=0)
    page = rep.html.read_text(encoding="utf-8")
    assert len(page) < 500_000 and "truncated: 2,000,000 characters in all, the first 10,000 kept" in page
    rep = write_report([load_run(tmp_path / "big")], tmp_path / "all.html", n_boot=0, max_text_chars=None)
    assert len(rep.html.read_text(encoding="utf-8")) > 2_000_000


def test_cap_options_on_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "e"
    code, _, err = run_cli(capsys, "eval", "--agent", "scripted:function-solver", "--gym", "function", "--n", "1",
                           "--out", str(out), "--bootstrap", "0", "--max-turn-chars", "40", "--max-report-chars", "30")
    assert code == 0, err
    (ep,) = read_episodes(out / "episodes.jsonl")
    assert all(len(t.think) <= 40 + 70 for t in ep.turns) and "truncated" in ep.turns[0].think
    assert "the first 30 kept" in (out / "report.html").read_text(encoding="utf-8")
    code, _, _ = run_cli(capsys, "report", str(out), "--bootstrap", "0", "--max-report-chars", "0",
                         "--out", str(tmp_path / "r.html"))
    assert code == 0 and "the first 30 kept" not in (tmp_path / "r.html").read_text(encoding="utf-8")
    code, _, err = run_cli(capsys, "rollout", "--agent", "hf:embedded", "--gym", "function", "--n", "1",
                           "--out", str(tmp_path / "r.jsonl"), "--max-turn-chars", "10")
    assert code == 2 and "--max-turn-chars applies to scripted: and openai: agents" in err
