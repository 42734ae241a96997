"""The behaviour checker: exact counts and rates on hand-made episodes, and `baorl behaviour`."""

from __future__ import annotations

import json

import pytest

from baorl.cli.main import main
from baorl.records import Episode, Turn, write_episodes
from baorl.teach.checker import behaviour_table, check_episode, check_episodes, normalise_query, turn_flags


def ep(turns, **kw):
    fields = {"gym": "function", "task_id": "t", "termination": "turn_limit", **kw}
    return Episode.from_turns(turns=[Turn(**t) for t in turns], **fields)


FULL = "Memory: f(1, 2, 3, 4) = 10.\nHypotheses: 3 rules remain.\nPlan: turn 2 of 15, probe 2 2 2 2."

# six turns: 3 queries (one repeat after normalisation), 3 answers (two right after an answer)
EPISODE_A = ep([
    {"choice": "search", "content": "test", "think": FULL},
    {"choice": "action", "content": "1 2 3 4", "think": "**Memory**: nothing. **Candidates:** many."},
    {"choice": "action", "content": " 1, 2,  3, 4 ", "think": "## Plan: probe again"},
    {"choice": "answer", "content": "10", "think": "KNOWN SO FAR: x. theories: y. Next step: answer"},
    {"choice": "answer", "content": "11", "think": "I plan to answer 11 (no section label here)"},
    {"choice": "answer", "content": "12", "think": ""},
])
# a successful episode: no repeats, one answer, a turn without a tool call is still a turn
EPISODE_B = ep([
    {"choice": "action", "content": "Is it alive?", "think": "memory: -\nhypotheses: all\nplan: ask"},
    {"choice": "action", "content": "is it ALIVE", "think": "Observations: yes. Possibilities: 3. Strategy: x"},
    {"choice": None, "content": "", "think": "Memory: yes twice"},
], gym="telepathy", termination="no_tool_call")


def test_turn_flags_on_hand_made_turns():
    flags = turn_flags(EPISODE_A)
    assert [f.memory for f in flags] == [True, True, False, True, False, False]
    assert [f.hypotheses for f in flags] == [True, True, False, True, False, False]
    assert [f.plan for f in flags] == [True, False, True, True, False, False]
    assert [f.all_three for f in flags] == [True, False, False, True, False, False]
    assert [f.query for f in flags] == [True, True, True, False, False, False]
    assert [f.repeat for f in flags] == [False, False, True, False, False, False]
    assert [f.answer_after_answer for f in flags] == [False, False, False, False, True, True]


def test_episode_counts_and_rates_are_exact():
    a = check_episode(EPISODE_A)
    assert (a.turns, a.memory, a.hypotheses, a.plan, a.all_three) == (6, 3, 3, 3, 2)
    assert (a.queries, a.repeats, a.answers, a.answer_after_answer) == (3, 1, 3, 2)
    assert a.all_three_rate == pytest.approx(2 / 6) and a.repeat_rate == pytest.approx(1 / 3)
    assert a.answer_after_answer_rate == pytest.approx(2 / 3)
    b = check_episode(EPISODE_B)
    assert (b.turns, b.memory, b.hypotheses, b.plan, b.all_three) == (3, 3, 2, 2, 2)
    # a repeat needs the same choice and content: the question differs only in case and "?"
    assert (b.queries, b.repeats, b.answers) == (2, 1, 0)
    assert b.answer_after_answer_rate is None  # no answers: undefined, not 0


def test_pooled_report_is_a_micro_average_with_episode_shares():
    r = check_episodes([EPISODE_A, EPISODE_B, ep([])])
    assert (r.episodes, r.turns, r.all_three, r.queries, r.repeats) == (3, 9, 4, 5, 2)
    d = r.to_dict()
    assert d["all_three_rate"] == pytest.approx(4 / 9)
    assert d["repeat_rate"] == pytest.approx(2 / 5)
    assert d["answer_after_answer_rate"] == pytest.approx(2 / 3)
    assert d["mean_episode_all_three"] == pytest.approx((2 / 6 + 2 / 3) / 2)  # the empty episode has no turns
    assert d["repeat_episode_rate"] == pytest.approx(2 / 3)
    assert d["answer_after_answer_episode_rate"] == pytest.approx(1 / 3)
    assert d["turns_per_episode"] == pytest.approx(3.0)
    json.dumps(d)  # JSON-ready
    assert check_episodes([]).to_dict()["memory_rate"] is None


@pytest.mark.parametrize("think,expected", [
    ("Memory: a", (True, False, False)),
    ("memory : a\nHYPOTHESIS: b", (True, True, False)),
    ("Next steps: probe", (False, False, True)),
    ("Remaining   candidates: 2; budget: 3 turns", (False, True, True)),
    ("memorize this plan", (False, False, False)),  # words without a label colon do not count
    ("explanation: none; planet: mars", (False, False, False)),  # labels are whole words
])
def test_section_markers(think, expected):
    f = turn_flags(ep([{"choice": "action", "content": "x", "think": think}]))[0]
    assert (f.memory, f.hypotheses, f.plan) == expected


def test_normalise_query():
    assert normalise_query("Is it a dog?") == normalise_query("is it a dog")
    assert normalise_query("Is it a dog?") != normalise_query("Is it a cat?")


def test_baorl_behaviour_cli(tmp_path, capsys):
    write_episodes(tmp_path / "a.jsonl", [EPISODE_A, EPISODE_B])
    write_episodes(tmp_path / "b.jsonl", [EPISODE_A])
    assert main(["behaviour", str(tmp_path / "a.jsonl"), str(tmp_path / "b.jsonl"), "--json"]) == 0
    groups = json.loads(capsys.readouterr().out)["groups"]
    # a.jsonl holds two gyms, so it is split by gym and policy
    assert set(groups) == {"a.jsonl [function · ]", "a.jsonl [telepathy · ]", "b.jsonl"}
    assert groups["b.jsonl"]["repeats"] == 1 and groups["a.jsonl [telepathy · ]"]["turns"] == 3
    assert main(["behaviour", str(tmp_path / "b.jsonl")]) == 0
    out = capsys.readouterr().out
    assert "33.3% (1/3)" in out and "answer after answer" in out
    assert main(["behaviour", str(tmp_path / "missing.jsonl")]) == 2


def test_table_has_a_column_per_group():
    table = behaviour_table({"x": check_episodes([EPISODE_A]), "y": check_episodes([EPISODE_B])})
    assert [c.header for c in table.columns] == ["measure", "over", "x", "y"]
