import json

import pytest

from baorl.records import Episode, RecordFileError, Turn, read_episodes, write_episodes


def _ep(i=0):
    turns = [Turn(choice="action", content="1 2 3 4", feedback="f(1, 2, 3, 4) = 7"),
             Turn(choice="answer", content="9", reward=1.0, user_involved=True, feedback="correct")]
    return Episode.from_turns(turns=turns, gym="function", task_id=f"t{i}", termination="solved", success=True)


def test_from_turns_derives_score_and_user_actions():
    ep = _ep()
    assert ep.score == 1.0 and ep.user_actions == 1


def test_round_trip_and_spec_fields(tmp_path):
    path = tmp_path / "eps.jsonl"
    write_episodes(path, [_ep(0), _ep(1)])
    write_episodes(path, [_ep(2)], append=True)
    eps = read_episodes(path)
    assert [e.task_id for e in eps] == ["t0", "t1", "t2"] and eps[0] == _ep(0)
    row = json.loads(path.read_text().splitlines()[0])
    for key in ("gym", "task_id", "policy", "seed", "turns", "score", "success", "user_actions", "termination", "simulator"):
        assert key in row
    for key in ("choice", "content", "reward", "feedback", "user_involved", "think", "prompt_tokens", "completion_tokens"):
        assert key in row["turns"][0]


def test_bad_line_names_file_and_line(tmp_path):
    path = tmp_path / "eps.jsonl"
    write_episodes(path, [_ep(0)])
    with path.open("a") as f:
        f.write('{"gym": "function", "task_id": "x", "termination": "exploded"}\n')
    with pytest.raises(RecordFileError, match=r"eps.jsonl:2"):
        read_episodes(path)


def test_partial_tail_from_a_killed_run(tmp_path):
    path = tmp_path / "eps.jsonl"
    write_episodes(path, [_ep(0), _ep(1)])
    text = path.read_text()
    path.write_text(text + text.splitlines()[0][:40])
    with pytest.raises(RecordFileError):
        read_episodes(path)
    assert [e.task_id for e in read_episodes(path, skip_partial_tail=True)] == ["t0", "t1"]


def test_missing_file():
    with pytest.raises(RecordFileError, match="no such records file"):
        read_episodes("/nonexistent/eps.jsonl")
