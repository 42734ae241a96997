"""Policies trained with several training seeds: `baorl.evaluation.seeds` and `baorl compare --group`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from baorl.cli.main import main
from baorl.evaluation.metrics import _T975, score_episodes
from baorl.evaluation.seeds import group_metrics, paired_difference, seed_table_markdown
from baorl.records import Episode, Turn, write_episodes

T2 = 4.303  # Student-t 0.975 quantile with 2 degrees of freedom (3 seeds or 3 pairs)


def ep(task: str, score: float = 0.0, *, success: bool = False, termination: str = "turn_limit", answers: int = 1,
       searches: int = 0, actions: int = 0, gym: str = "function", seed: int = 0) -> Episode:
    """An episode with `answers` answer turns (user-involved), `searches` user-involved search turns and
    `actions` turns that need no user."""
    turns = ([Turn(choice="answer", user_involved=True) for _ in range(answers)]
             + [Turn(choice="search", user_involved=True) for _ in range(searches)]
             + [Turn(choice="action") for _ in range(actions)])
    return Episode(gym=gym, task_id=task, score=score, success=success, termination=termination, turns=turns,
                   seed=seed)


def flat_runs(scores: list[float], tasks: tuple[str, ...] = ("a", "b")) -> list[list[Episode]]:
    """One run per seed value; every task of run i scores scores[i]."""
    return [[ep(t, s) for t in tasks] for s in scores]


def half(values: list[float], t: float = T2) -> float:
    m = sum(values) / len(values)
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))
    return t * sd / math.sqrt(len(values))


# ---- mean over seeds and the t interval ----------------------------------------------------------
def test_mean_over_seeds_and_t_interval_by_hand() -> None:
    assert _T975[1] == T2
    runs = [[ep("a", s - 0.05), ep("b", s + 0.05)] for s in (0.1, 0.2, 0.3)]
    g = group_metrics({"bao": runs}, K=2, n_boot=200, seed=3)["groups"]["bao"]
    score = g["overall"]["metrics"]["score"]
    assert score["seeds"] == pytest.approx([0.1, 0.2, 0.3])
    assert score["mean"] == pytest.approx(0.2) and score["n_seeds"] == 3
    h = T2 * 0.1 / math.sqrt(3)
    assert score["t_ci"] == pytest.approx([0.2 - h, 0.2 + h], abs=1e-6)
    assert g["gyms"]["function"]["metrics"]["score"] == score  # one gym: overall is that gym
    # pooled: exactly score_episodes of the episodes relabelled with seed = run index
    pooled = score_episodes([e.model_copy(update={"seed": i}) for i, r in enumerate(runs) for e in r],
                            K=2, n_boot=200, seed=3)["overall"]
    assert score["pooled"] == pytest.approx(pooled["score"]) == pytest.approx(0.2)
    assert score["pooled_ci"] == pooled["score_ci"]
    assert score["t_ci"] == pytest.approx(pooled["score_seed_ci"], abs=1e-6)  # the same t interval over seeds
    assert g["n_runs"] == 3 and g["runs"] == ["bao/s0", "bao/s1", "bao/s2"]


def test_clipped_share_answers_user_actions_and_turns() -> None:
    tasks = ("t1", "t2", "t3", "t4")
    clipped = {0: {"t1"}, 1: {"t1", "t2"}, 2: set()}             # shares 0.25, 0.5, 0
    answers = {0: [1, 2, 3, 2], 1: [1, 1, 1, 1], 2: [3, 3, 3, 3]}  # means 2, 1, 3
    runs = [[ep(t, termination="token_budget" if t in clipped[i] else "turn_limit", answers=answers[i][j],
                searches=1, actions=2) for j, t in enumerate(tasks)] for i in range(3)]
    g = group_metrics({"p": runs}, K=5, n_boot=100)["groups"]["p"]["overall"]["metrics"]
    c = g["clipped"]
    assert c["seeds"] == [0.25, 0.5, 0.0] and c["mean"] == pytest.approx(0.25)
    assert c["t_ci"] == pytest.approx([0.25 - half([0.25, 0.5, 0.0]), 0.25 + half([0.25, 0.5, 0.0])], abs=1e-6)
    # pooled: per task the share over its 3 runs' episodes (t1: 2/3, t2: 1/3, t3, t4: 0), then the mean
    assert c["pooled"] == pytest.approx((2 / 3 + 1 / 3) / 4, abs=1e-6)
    a = g["answers"]
    assert a["seeds"] == [2.0, 1.0, 3.0] and a["mean"] == pytest.approx(2.0)
    assert a["t_ci"] == pytest.approx([2 - half([2, 1, 3]), 2 + half([2, 1, 3])], abs=1e-6)
    # user actions count the user-involved search too; turns count every turn
    assert g["user_actions"]["seeds"] == [3.0, 2.0, 4.0]
    assert g["turns"]["seeds"] == [5.0, 4.0, 6.0] and g["turns"]["mean"] == pytest.approx(5.0)
    # user rate: per episode, then averaged (run 0: 2/4, 3/5, 4/6, 3/5)
    assert g["user_rate"]["seeds"] == pytest.approx([(2 / 4 + 3 / 5 + 4 / 6 + 3 / 5) / 4, 2 / 4, 4 / 6], abs=1e-6)


def test_pooled_bootstrap_contains_the_pooled_value_and_narrows_when_tasks_agree() -> None:
    tasks = tuple(f"t{i:02d}" for i in range(20))
    # the same pooled mean 0.5; "agree": tasks between 0.45 and 0.55, "spread": tasks 0 or 1
    agree = [[ep(t, 0.45 + 0.1 * (j % 2), answers=1 + j % 2) for j, t in enumerate(tasks)] for _ in range(3)]
    spread = [[ep(t, float(j % 2), answers=1 + 3 * (j % 2)) for j, t in enumerate(tasks)] for _ in range(3)]
    res = group_metrics({"agree": agree, "spread": spread}, K=5, n_boot=500, seed=1)["groups"]
    width = {}
    for name in ("agree", "spread"):
        for key in ("score", "answers"):
            m = res[name]["overall"]["metrics"][key]
            lo, hi = m["pooled_ci"]
            assert lo <= m["pooled"] <= hi, (name, key, m)
            width[name, key] = hi - lo
    assert res["agree"]["overall"]["metrics"]["score"]["pooled"] == pytest.approx(0.5)
    assert res["spread"]["overall"]["metrics"]["score"]["pooled"] == pytest.approx(0.5)
    assert 0 < width["agree", "score"] < width["spread", "score"] / 5
    assert width["agree", "answers"] < width["spread", "answers"]


def test_extra_metrics_use_the_score_resamples() -> None:
    """With score == answers in every episode, the answers interval is the score interval: the same draws."""
    tasks = tuple(f"t{i}" for i in range(12))
    runs = [[ep(t, float(1 + (j * (i + 2)) % 4), answers=1 + (j * (i + 2)) % 4) for j, t in enumerate(tasks)]
            for i in range(3)]
    m = group_metrics({"p": runs}, K=5, n_boot=300, seed=7)["groups"]["p"]["overall"]["metrics"]
    assert m["answers"]["pooled"] == pytest.approx(m["score"]["pooled"])
    assert m["answers"]["pooled_ci"] == pytest.approx(m["score"]["pooled_ci"], abs=1e-6)
    assert m["answers"]["pooled_ci"][0] < m["answers"]["pooled_ci"][1]


def test_pass_at_u_per_seed() -> None:
    ok1 = ep("a", 1.0, success=True, termination="solved", answers=1)
    ok2 = ep("a", 1.0, success=True, termination="solved", answers=2)
    fail = ep("b", 0.0)
    runs = [[ok1, fail], [ok2, fail], [ok2.model_copy(update={"task_id": "b"}), ok1]]
    p = group_metrics({"p": runs}, K=2, n_boot=0)["groups"]["p"]["overall"]["pass_at_u"]
    assert p["1"]["seeds"] == [0.5, 0.0, 0.5] and p["2"]["seeds"] == [0.5, 0.5, 1.0]
    assert p["1"]["mean"] == pytest.approx(1 / 3) and p["1"]["pooled_ci"] is None  # no bootstrap


def test_one_run_has_no_t_interval() -> None:
    res = group_metrics({"solo": flat_runs([0.4]), "bao": flat_runs([0.1, 0.2, 0.3])}, K=1, n_boot=50)
    solo = res["groups"]["solo"]["overall"]["metrics"]["score"]
    assert solo["mean"] == pytest.approx(0.4) and solo["t_ci"] is None and solo["n_seeds"] == 1
    assert solo["pooled_ci"] is not None
    md = seed_table_markdown(res)
    row = next(line for line in md.splitlines() if line.startswith("| solo | 1 |"))
    assert "0.400 [n/a]" in row
    assert "0.200 [" in next(line for line in md.splitlines() if line.startswith("| bao | 3 |"))


def test_simulator_errors_are_left_out() -> None:
    runs = flat_runs([0.1, 0.2, 0.3])
    with_err = [r + [ep("a", 0.0, termination="simulator_error")] for r in runs]
    clean = group_metrics({"p": runs}, K=1, n_boot=50)["groups"]["p"]["overall"]
    dirty = group_metrics({"p": with_err}, K=1, n_boot=50)["groups"]["p"]["overall"]
    assert dirty["simulator_errors"] == 3 and clean["simulator_errors"] == 0
    assert dirty["metrics"] == clean["metrics"] and dirty["n"] == clean["n"] == 6


def test_overall_weights_gyms_by_tasks() -> None:
    # function: 3 tasks, none clipped; turtle: 1 task, clipped -> overall share 1/4 in every seed
    runs = [[ep(t) for t in ("a", "b", "c")] + [ep("z", gym="turtle", termination="token_budget")] for _ in range(2)]
    g = group_metrics({"p": runs}, K=1, n_boot=50)["groups"]["p"]
    assert g["gyms"]["turtle"]["metrics"]["clipped"]["mean"] == 1.0
    assert g["overall"]["metrics"]["clipped"]["seeds"] == [0.25, 0.25]
    assert g["overall"]["metrics"]["clipped"]["pooled"] == pytest.approx(0.25)


def test_runs_of_a_group_must_cover_the_same_tasks() -> None:
    runs = [[ep("a"), ep("b")], [ep("a"), ep("b")], [ep("a"), ep("c")]]
    with pytest.raises(ValueError, match=r"runs/bao-s2: covers other tasks than runs/bao-s0") as e:
        group_metrics({"bao": runs}, K=1, n_boot=0, run_names={"bao": ["runs/bao-s0", "runs/bao-s1", "runs/bao-s2"]})
    assert "function/b" in str(e.value) and "function/c" in str(e.value)
    with pytest.raises(ValueError, match=r"bao/s1: no episode records"):
        group_metrics({"bao": [[ep("a")], []]}, K=1, n_boot=0)


# ---- paired comparison -----------------------------------------------------------------------------
def test_paired_difference_by_hand() -> None:
    tasks = ("a", "b", "c", "d")
    a = [[ep(t, s + 0.1 * (j - 1.5)) for j, t in enumerate(tasks)] for s in (0.5, 0.6, 0.7)]
    b = [[ep(t, s) for t in tasks] for s in (0.1, 0.3, 0.2)]
    res = paired_difference(a, b, n_boot=400, seed=2, names=("BAO", "UserRL"))
    assert (res["a"], res["b"], res["n_pairs"]) == ("BAO", "UserRL", 3)
    d = res["overall"]["metrics"]["score"]
    assert d["a"] == pytest.approx([0.5, 0.6, 0.7]) and d["b"] == pytest.approx([0.1, 0.3, 0.2])
    assert d["diffs"] == pytest.approx([0.4, 0.3, 0.5]) and d["mean"] == pytest.approx(0.4)
    h = T2 * 0.1 / math.sqrt(3)
    assert d["t_ci"] == pytest.approx([0.4 - h, 0.4 + h], abs=1e-6)
    assert d["verdict"] == "significant"
    lo, hi = d["boot_ci"]
    assert lo <= 0.4 <= hi and lo < hi  # tasks differ, so resampling them moves the mean difference
    # B's tasks all score alike: the difference on resampled tasks is A's spread only, |A_i task - mean| <= 0.15
    assert 0.4 - 0.15 <= lo and hi <= 0.4 + 0.15
    assert res["overall"]["metrics"]["user_rate"]["diffs"] == [0.0, 0.0, 0.0]
    assert res["overall"]["metrics"]["user_rate"]["verdict"] == "not significant"


def test_verdict_follows_the_t_interval_over_pairs() -> None:
    tasks = ("a", "b", "c")
    base = flat_runs([0.2, 0.2, 0.2], tasks)
    # differences 0.6, 0.0, 0.3: the bootstrap over tasks (identical tasks) is [0.3, 0.3], the t interval is wide
    wide = paired_difference(flat_runs([0.8, 0.2, 0.5], tasks), base, n_boot=100)["overall"]["metrics"]["score"]
    assert wide["boot_ci"] == pytest.approx([0.3, 0.3])
    assert wide["t_ci"][0] < 0 < wide["t_ci"][1] and wide["verdict"] == "not significant"
    # a consistent gain in every pair
    tight = paired_difference(flat_runs([0.5, 0.52, 0.55], tasks), base, n_boot=100)["overall"]["metrics"]["score"]
    assert tight["t_ci"][0] > 0 and tight["verdict"] == "significant"
    # a consistent loss is significant too (the interval lies below 0)
    loss = paired_difference(base, flat_runs([0.5, 0.52, 0.55], tasks), n_boot=0)["overall"]["metrics"]["score"]
    assert loss["t_ci"][1] < 0 and loss["verdict"] == "significant" and loss["boot_ci"] is None
    # one pair: no interval over pairs
    one = paired_difference(flat_runs([0.9], tasks), flat_runs([0.1], tasks), n_boot=50)["overall"]["metrics"]
    assert one["score"]["t_ci"] is None and one["score"]["verdict"] == "n/a"
    # clipped share and answers are compared as well
    clip = [[ep(t, termination="token_budget", answers=2) for t in tasks] for _ in range(3)]
    m = paired_difference(clip, base, n_boot=50)["overall"]["metrics"]
    assert m["clipped"]["diffs"] == [1.0, 1.0, 1.0] and m["clipped"]["verdict"] == "significant"
    assert m["answers"]["mean"] == pytest.approx(1.0)


def test_a_gain_on_one_task_in_every_pair_is_not_significant_over_tasks() -> None:
    # every A seed solves task t0 and nothing else, every B seed nothing: the pair differences are all
    # 1/10, so the t interval over pairs is the point 0.1, but resampling the tasks often leaves t0 out
    tasks = tuple(f"t{i}" for i in range(10))
    a = [[ep(t, 1.0 if t == "t0" else 0.0) for t in tasks] for _ in range(3)]
    b = flat_runs([0.0, 0.0, 0.0], tasks)
    m = paired_difference(a, b, n_boot=400, seed=1)["overall"]["metrics"]["score"]
    assert m["diffs"] == pytest.approx([0.1, 0.1, 0.1]) and m["t_ci"] == pytest.approx([0.1, 0.1])
    assert m["boot_ci"][0] == 0.0 and m["verdict"] == "not significant over tasks"
    # the same gain on every task holds against both: significant
    wide = paired_difference(flat_runs([0.1, 0.1, 0.1], tasks), b, n_boot=400, seed=1)["overall"]["metrics"]["score"]
    assert wide["boot_ci"] == pytest.approx([0.1, 0.1]) and wide["verdict"] == "significant"


def test_pair_errors() -> None:
    with pytest.raises(ValueError, match="BAO has 3 runs and Base has 2.*same number of runs"):
        paired_difference(flat_runs([0.1, 0.2, 0.3]), flat_runs([0.1, 0.2]), n_boot=0, names=("BAO", "Base"))
    other = [[ep("a"), ep("x")] for _ in range(3)]
    with pytest.raises(ValueError, match="B/s0: covers other tasks than A/s0"):
        paired_difference(flat_runs([0.1, 0.2, 0.3]), other, n_boot=0)


# ---- baorl compare --group ---------------------------------------------------------------------------
def write_eval(path: Path, episodes: list[Episode]) -> str:
    path.mkdir(parents=True)
    write_episodes(path / "episodes.jsonl", episodes)
    return str(path)


@pytest.fixture()
def seed_dirs(tmp_path: Path) -> dict[str, list[str]]:
    """Eval dirs of two policies with three training seeds each (BAO better by 0.3-0.5 in every pair)."""
    tasks = ("t1", "t2", "t3", "t4")
    out: dict[str, list[str]] = {"bao": [], "base": []}
    for i, (sa, sb) in enumerate(((0.7, 0.3), (0.8, 0.4), (0.9, 0.4))):
        out["bao"].append(write_eval(tmp_path / "eval" / f"bao-s{i}", [
            ep(t, sa, success=j < 3, termination="solved" if j < 3 else "token_budget", answers=1 + j % 2)
            for j, t in enumerate(tasks)]))
        out["base"].append(write_eval(tmp_path / "eval" / f"base-s{i}", [
            ep(t, sb, answers=3, termination="turn_limit") for t in tasks]))
    return out


def test_compare_groups_end_to_end(seed_dirs: dict[str, list[str]], tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cmp" / "report.html"
    code = main(["compare", "--group", "BAO=" + ",".join(seed_dirs["bao"]), "--group",
                 "UserRL=" + ",".join(seed_dirs["base"]), "--pair", "BAO,UserRL", "--out", str(out),
                 "--bootstrap", "100"])
    printed = capsys.readouterr().out
    assert code == 0
    data = json.loads((tmp_path / "cmp" / "report-seeds.json").read_text())
    assert list(data["groups"]) == ["BAO", "UserRL"] and data["K"] == 5
    bao = data["groups"]["BAO"]
    assert bao["labels"] == ["BAO/s0", "BAO/s1", "BAO/s2"] and bao["runs"] == seed_dirs["bao"]
    assert bao["overall"]["metrics"]["score"]["seeds"] == pytest.approx([0.7, 0.8, 0.9])
    assert bao["overall"]["metrics"]["clipped"]["mean"] == pytest.approx(0.25)
    assert bao["overall"]["metrics"]["answers"]["mean"] == pytest.approx(1.5)
    assert data["groups"]["UserRL"]["overall"]["metrics"]["success"]["mean"] == 0.0
    (pair,) = data["pairs"]
    score = pair["overall"]["metrics"]["score"]
    assert (pair["a"], pair["b"]) == ("BAO", "UserRL") and score["diffs"] == pytest.approx([0.4, 0.4, 0.5])
    assert score["verdict"] == "significant" and score["boot_ci"] is not None
    assert pair["overall"]["metrics"]["answers"]["mean"] == pytest.approx(-1.5)
    md = (tmp_path / "cmp" / "report-seeds.md").read_text()
    assert "### Training seeds: mean over seeds" in md and "### Paired: BAO - UserRL" in md
    assert any(line.startswith("| BAO | 3 | 0.800 [") for line in md.splitlines())
    h = half([0.4, 0.4, 0.5])
    assert f"| score | 0.400, 0.400, 0.500 | 0.433 | [{0.4333333 - h:.3f}, {0.4333333 + h:.3f}] | [0.433, 0.433] " \
           "| significant |" in md.splitlines()
    # the console shows the same tables; the HTML shows every run and the seed section
    flat = " ".join(printed.split())
    assert "Training seeds: mean over seeds" in flat and "Paired: BAO - UserRL" in flat and "significant" in flat
    assert "report-seeds.json" in flat and "report-seeds.md" in flat
    page = out.read_text()
    assert "Training seeds" in page and "BAO/s2" in page and "UserRL/s0" in page
    assert (tmp_path / "cmp" / "report-pareto.svg").is_file()


def test_compare_group_errors(seed_dirs: dict[str, list[str]], tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    def run(*argv: str) -> tuple[int, str]:
        code = main(["compare", *argv, "--bootstrap", "20"])
        return code, " ".join(capsys.readouterr().err.split())

    out = tmp_path / "x" / "r.html"
    code, err = run("--group", "A=" + ",".join(seed_dirs["bao"]), "--group", "B=" + ",".join(seed_dirs["base"][:2]),
                    "--pair", "A,B", "--out", str(out))
    assert code == 2 and "A has 3 runs and B has 2" in err and not out.parent.exists()
    code, err = run("--group", "A=" + ",".join(seed_dirs["bao"]), "--group", f"B={seed_dirs['bao'][0]}",
                    "--out", str(out))
    assert code == 2 and "a directory belongs to one group" in err
    code, err = run("--group", "A=" + ",".join(seed_dirs["bao"]), "--pair", "A,C", "--out", str(out))
    assert code == 2 and "no group 'C'" in err
    code, err = run(*seed_dirs["bao"][:2], "--pair", "A,B", "--out", str(out))
    assert code == 2 and "no group 'A'" in err
    code, err = run("--group", "A", "--out", str(out))
    assert code == 2 and "NAME=DIR1,DIR2" in err
    odd = write_eval(tmp_path / "eval" / "odd", [ep("t1"), ep("t9")])
    code, err = run("--group", "A=" + ",".join([*seed_dirs["bao"][:2], odd]), "--out", str(out))
    assert code == 2 and "covers other tasks than" in " ".join(err.split()) and "odd" in err
    assert not out.parent.exists()


def test_compare_without_groups_is_unchanged(seed_dirs: dict[str, list[str]], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "plain" / "report.html"
    assert main(["compare", seed_dirs["bao"][0], seed_dirs["base"][0], "--out", str(out), "--bootstrap", "20"]) == 0
    printed = capsys.readouterr().out
    assert out.is_file() and "Training seeds" not in out.read_text() and "Training seeds" not in printed
    assert sorted(p.name for p in out.parent.iterdir() if "seeds" in p.name) == []
