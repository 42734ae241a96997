"""Intention gym (spec: gyms.md, "Intention"), its embedded requests and the offline user."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from baorl.agents.base import tool_call_text
from baorl.agents.scripted import ReplayAgent as Script
from baorl.gyms import load_tasks, make
from baorl.gyms.base import TaskDataError
from baorl.gyms.intention import IntentionGym, IntentionTask, question_reward
from baorl.runs.play import play_episode
from baorl.users import IntentionUser, SimulatorError, make_user
from baorl.users.embedding import Embedder
from baorl.users.similarity import DETAIL, OfflineIntentionUser

SHARED = Path(__file__).resolve().parents[2] / "shared" / "userrl"
USERRL_FILE = SHARED / "intention" / "intentions_train.json"
OFF_TASK = [
    "Who is your favourite football team?",
    "Do you like sports?",
    "Can you tell me more?",
    "How are you today?",
    "Do you have any pets?",
    "What is your name?",
]


# ---- helpers -----------------------------------------------------------------------------------
class CannedUser:
    """A fake Intention user: each question uncovers the next canned list of indices."""

    label = "canned"
    detail = "test double"

    def __init__(self, plays: list[list[int]] | None = None) -> None:
        self.plays = list(plays or [])
        self.seen_remaining: list[list[int]] = []

    async def reply(self, task: Any, question: str, remaining: list[int]) -> tuple[str, list[int]]:
        self.seen_remaining.append(list(remaining))
        covered = self.plays.pop(0) if self.plays else []
        return f"reply to: {question}", covered


class BrokenUser(CannedUser):
    def __init__(self, result: Any) -> None:
        super().__init__()
        self.result = result

    async def reply(self, task: Any, question: str, remaining: list[int]) -> Any:
        return self.result


class FailingUser(CannedUser):
    async def reply(self, task: Any, question: str, remaining: list[int]) -> tuple[str, list[int]]:
        raise SimulatorError("simulator returned no JSON after 3 retries")


def request(task_id: str) -> IntentionTask:
    return next(t for t in IntentionGym.embedded_tasks("all") if t.id == task_id)


def synthetic(importances: list[str]) -> IntentionTask:
    details = [
        {
            "description": f"detail {i}",
            "importance": imp,
            "inquiry": f"question {i}?",
            "options": [f"opt {i}"],
        }
        for i, imp in enumerate(importances)
    ]
    return IntentionTask(id="syn", category="Test", task="Do something.", missing_details=details)


@pytest.fixture(scope="module")
def user() -> OfflineIntentionUser:
    return OfflineIntentionUser()


# ---- the reward table ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("importances", "reward"),
    [
        ([], 0.0),
        (["3"], 1.0),
        (["2"], 0.7),
        (["1"], 0.4),
        (["3", "2"], 0.8),
        (["2", "3"], 0.8),
        (["3", "1", "1"], 0.6),
        (["2", "1"], 0.5),
        (["2", "2", "2"], 0.3),
        (["2", "2", "2", "2"], 0.1),
        (["1", "1"], 0.2),
        (["1", "1", "1"], 0.0),
        (["1", "1", "1", "1"], 0.0),
        (["3"] * 7, 0.0),
    ],
)
def test_question_reward_table(importances, reward):
    assert question_reward(importances) == pytest.approx(reward)
    assert question_reward(importances) >= 0.0


# ---- the gym's rules, with a fake user -----------------------------------------------------------
def test_prompt_shows_category_and_request_only():
    task = request("emb-i01")
    obs, info = IntentionGym(task, user=CannedUser()).reset(seed=0)
    assert task.category in obs and task.task in obs
    for d in task.missing_details:
        assert d.description not in obs and d.inquiry not in obs and d.inquiry not in info["system_prompt"]
    assert info["max_turns"] == 15 and info["user_choices"] == ["action", "answer"]
    assert "15 turns" in info["system_prompt"]
    # as in UserRL, the system prompt offers one choice: a clarifying question
    assert "'action'" in info["system_prompt"] and "answer" not in info["system_prompt"]


def test_turn_limit_is_userrls_15():
    # UserRL trains with multi_turn.max_turns=16, which executes at most 15 tool calls, and its
    # environment manager defaults this gym to 15 steps; baorl once decided 10 on its own.
    assert IntentionGym.default_max_turns == 15
    gym = IntentionGym(synthetic(["3", "2"]), user=CannedUser())
    gym.reset()
    steps = [gym.step(f"[action] off-topic {n}") for n in range(15)]
    assert not any(s[2] or s[3] for s in steps[:14])
    assert steps[-1][3] and steps[-1][4]["termination"] == "turn_limit"


def test_rewards_follow_what_each_question_uncovers():
    # importances: 0 -> "3", 1 -> "1", 2 -> "2", 3 -> "2"
    fake = CannedUser([[], [1], [0, 2], [0], [5], [3]])
    gym = IntentionGym(synthetic(["3", "1", "2", "2"]), user=fake)
    gym.reset()
    steps = [gym.step(f"[action] question {n}") for n in range(6)]
    assert [s[1] for s in steps] == pytest.approx([0.0, 0.4, 0.8, 0.0, 0.0, 0.7])
    assert [s[4]["covered"] for s in steps] == [
        [],
        [1],
        [0, 2],
        [],
        [],
        [3],
    ]  # repeats and bad indices ignored
    assert [s[4]["remaining"] for s in steps] == [4, 3, 1, 1, 1, 0]
    assert fake.seen_remaining[:3] == [[0, 1, 2, 3], [0, 1, 2, 3], [0, 2, 3]]
    assert [s[2] for s in steps] == [False] * 5 + [True]  # terminates when every detail is covered
    assert steps[-1][4]["termination"] == "solved"
    assert steps[0][0] == "reply to: question 0"  # the feedback is the user's reply
    assert all(s[4]["user_involved"] for s in steps)


def test_one_question_covering_everything_is_penalised_but_solves():
    gym = IntentionGym(synthetic(["3", "2", "1"]), user=CannedUser([[0, 1, 2]]))
    gym.reset()
    obs, reward, term, trunc, info = gym.step("[action] tell me everything")
    assert reward == pytest.approx(0.6) and term and info["termination"] == "solved"


def test_answer_is_a_question_like_action():
    # UserRL's Intention gym strips "[answer]" like "[action]" and sends the text to the user as a
    # question: same reply, same coverage reward, and the episode goes on.
    fake = CannedUser([[0], [1], [2]])
    gym = IntentionGym(synthetic(["3", "2", "1"]), user=fake)
    gym.reset()
    obs, reward, term, trunc, info = gym.step("[answer] What is your budget?")
    assert obs == "reply to: What is your budget?" and reward == pytest.approx(1.0)
    assert not term and not trunc and "termination" not in info
    assert info["valid"] and info["user_involved"] and info["covered"] == [0] and info["remaining"] == 2
    assert gym.step("[action] Where to?")[1] == pytest.approx(0.7)
    obs, reward, term, trunc, info = gym.step("[answer] Alone or with others?")
    assert reward == pytest.approx(0.4) and term and info["termination"] == "solved"
    assert fake.seen_remaining == [[0, 1, 2], [1, 2], [2]]


def test_an_answer_covering_nothing_earns_nothing_and_continues():
    gym = IntentionGym(synthetic(["3"]), user=CannedUser([[]]))
    gym.reset()
    obs, reward, term, trunc, info = gym.step("[answer] Plan a trip to the seaside for two.")
    assert reward == 0.0 and not term and not trunc and info["covered"] == [] and info["remaining"] == 1


def test_finish_is_the_only_early_stop():
    gym = IntentionGym(synthetic(["3", "2"]), user=CannedUser([[0]]))
    gym.reset()
    assert gym.step("[action] q")[1] == pytest.approx(1.0)
    obs, reward, term, trunc, info = gym.step("[finish]")
    assert term and not trunc and reward == 0.0 and info["termination"] == "finish"
    with pytest.raises(RuntimeError, match="episode is over"):
        gym.step("[action] more?")


def test_answer_on_the_last_turn_hits_the_turn_limit():
    gym = IntentionGym(synthetic(["3", "2"]), user=CannedUser([[]]), max_turns=1)
    gym.reset()
    obs, reward, term, trunc, info = gym.step("[answer] summary")
    assert trunc and not term and info["termination"] == "turn_limit"


def test_turn_limit_and_reset():
    gym = IntentionGym(synthetic(["3", "2"]), user=CannedUser([[0], [], [0]]), max_turns=2)
    gym.reset()
    gym.step("[action] a")
    obs, reward, term, trunc, info = gym.step("[action] b")
    assert trunc and info["termination"] == "turn_limit"
    gym.reset()
    assert gym.remaining == [0, 1] and gym.step("[action] a")[1] == pytest.approx(1.0)


@pytest.mark.parametrize(
    "bad", [("text", [0.5]), ("text", "0"), (None, []), ("text", [True]), "ab", None, ("text", [0], "extra")]
)
def test_malformed_user_replies_are_simulator_errors(bad):
    gym = IntentionGym(synthetic(["3"]), user=BrokenUser(bad))
    gym.reset()
    obs, reward, term, trunc, info = gym.step("[action] q")
    assert trunc and info["termination"] == "simulator_error" and reward == 0


def test_simulator_error_ends_the_played_episode_as_such():
    gym = IntentionGym(request("emb-i01"), user=FailingUser())
    ep = play_episode(gym, Script([tool_call_text("action", "Where to?", "ask")]))
    assert ep.termination == "simulator_error" and not ep.success and ep.score == 0
    assert ep.simulator == "canned" and ep.user_actions == 1


def test_search_is_not_an_intention_choice():
    gym = IntentionGym(synthetic(["3"]), user=CannedUser())
    gym.reset()
    obs, reward, term, trunc, info = gym.step("[search] flights")
    assert info["valid"] is False and reward == 0 and not term
    assert obs.endswith(IntentionGym.format_hint(gym)) and "'answer'" not in obs


# ---- task data ---------------------------------------------------------------------------------
def test_all_userrl_requests_load():
    tasks = IntentionGym.load_tasks(USERRL_FILE)
    raw = json.loads(USERRL_FILE.read_text(encoding="utf-8"))
    assert len(tasks) == 380 and [t.id for t in tasks] == [r["id"] for r in raw]
    for t in tasks:
        assert t.missing_details and all(d.importance in ("1", "2", "3") for d in t.missing_details)
        assert all(o == o.strip() and o for d in t.missing_details for o in d.options)
    assert sum(len(t.missing_details) for t in tasks) == 1348


def write(tmp_path: Path, data: Any) -> Path:
    p = tmp_path / "intentions.json"
    p.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return p


def rec(task_id: str = "a", **changes: Any) -> dict[str, Any]:
    r = {
        "id": task_id,
        "category": "C",
        "task": "Do it.",
        "missing_details": [{"description": "d", "importance": "2", "inquiry": "q?", "options": ["x"]}],
    }
    r.update(changes)
    return r


def test_bad_request_files_name_the_file_and_the_record(tmp_path):
    bad_importance = rec(
        "b", missing_details=[{"description": "d", "importance": "4", "inquiry": "q?", "options": ["x"]}]
    )
    with pytest.raises(TaskDataError, match=r"intentions\.json: record 1 \(id 'b'\).*importance"):
        IntentionGym.load_tasks(write(tmp_path, [rec("a"), bad_importance]))
    with pytest.raises(TaskDataError, match=r"record 0 \(id 'a'\).*missing_details"):
        IntentionGym.load_tasks(write(tmp_path, [rec("a", missing_details=[])]))
    with pytest.raises(TaskDataError, match=r"record 0.*options"):
        IntentionGym.load_tasks(
            write(
                tmp_path,
                [
                    rec(
                        "a",
                        missing_details=[
                            {"description": "d", "importance": "1", "inquiry": "q?", "options": ["  "]}
                        ],
                    )
                ],
            )
        )
    with pytest.raises(TaskDataError, match="duplicate id"):
        IntentionGym.load_tasks(write(tmp_path, [rec("a"), rec("a")]))
    with pytest.raises(TaskDataError, match="expected a JSON list"):
        IntentionGym.load_tasks(write(tmp_path, {"a": rec()}))
    with pytest.raises(TaskDataError, match="not valid JSON"):
        IntentionGym.load_tasks(write(tmp_path, "[{"))
    with pytest.raises(TaskDataError, match="record 0 is not a JSON object"):
        IntentionGym.load_tasks(write(tmp_path, ["text"]))


def test_numeric_importance_is_accepted():
    t = IntentionTask.model_validate(
        rec(missing_details=[{"description": "d", "importance": 3, "inquiry": "q?", "options": [" x "]}])
    )
    assert t.missing_details[0].importance == "3" and t.missing_details[0].options == ["x"]


def test_embedded_requests_and_splits():
    train, test, every = (IntentionGym.embedded_tasks(s) for s in ("train", "test", "all"))
    assert (len(train), len(test), len(every)) == (8, 4, 12)
    assert {t.id for t in train}.isdisjoint(t.id for t in test)
    assert all(2 <= len(t.missing_details) <= 4 for t in every)
    assert [t.id for t in load_tasks("intention")] == [t.id for t in test]
    with pytest.raises(ValueError, match="unknown split"):
        IntentionGym.embedded_tasks("validation")


# ---- the offline user ----------------------------------------------------------------------------
def covered(
    user: OfflineIntentionUser, task: IntentionTask, question: str, remaining: list[int] | None = None
):
    return user.covered(
        task, question, list(range(len(task.missing_details))) if remaining is None else remaining
    )


def test_offline_user_is_labelled_and_fits_the_protocol(user):
    assert isinstance(user, IntentionUser) and user.label == "offline" and user.detail == DETAIL
    assert isinstance(make_user("intention", "offline"), OfflineIntentionUser)


@pytest.mark.parametrize("task", IntentionGym.embedded_tasks("all"), ids=lambda t: t.id)
def test_offline_user_on_embedded_requests(user, task):
    for i, d in enumerate(task.missing_details):
        assert i in covered(user, task, d.inquiry)
        assert i in covered(user, task, f"What is your preference regarding {d.description.lower()}?")
    for q in OFF_TASK:
        assert covered(user, task, q) == [], q
    assert covered(user, task, f"So you want me to: {task.task}") == []


def test_offline_user_on_shared_requests(user):
    tasks = IntentionGym.load_tasks(USERRL_FILE)[::40]
    for task in tasks:
        for i, d in enumerate(task.missing_details):
            assert i in covered(user, task, d.inquiry)
        assert covered(user, task, "Who is your favourite football team?") == []
        assert covered(user, task, f"So you want me to: {task.task}") == []


def test_offline_user_names_options_and_respects_remaining(user):
    task = request("emb-i04")  # goal, days per week, equipment
    assert covered(user, task, "Are you trying to lose weight or gain muscle?") == [0]
    assert covered(user, task, "Do you have access to a gym or weights?") == [2]
    assert covered(user, task, "What is your main goal?", remaining=[1, 2]) == []


def test_offline_reply_text(user):
    task = request("emb-i01")
    text, idx = asyncio.run(user.reply(task, "Where would you like to go for the weekend?", [0, 1, 2]))
    assert idx == [0] and text == "About destination or type of place: A nearby city."
    assert asyncio.run(user.reply(task, "Do you like jazz?", [0, 1, 2])) == (
        "I don't have a preference on that.",
        [],
    )
    assert asyncio.run(user.reply(task, "Where would you like to go?", [])) == (
        "I don't have a preference on that.",
        [],
    )


def test_offline_user_is_deterministic(user):
    task = request("emb-i09")
    qs = ["Which language would you like to learn?", "Do you want a free course?", "Any pets?"]
    first = [asyncio.run(user.reply(task, q, [0, 1, 2, 3])) for q in qs]
    fresh = OfflineIntentionUser(embedder=Embedder(cache_size=0))
    assert [asyncio.run(fresh.reply(task, q, [0, 1, 2, 3])) for q in qs] == first


def test_offline_episode_end_to_end():
    task = request("emb-i01")  # importances 3, 2, 1
    gym = make("intention", task="emb-i01", user="offline")
    agent = Script(
        [tool_call_text("action", "Do you like jazz?", "off-task")]
        + [tool_call_text("action", d.inquiry, "ask") for d in task.missing_details]
    )
    ep = play_episode(gym, agent)
    assert [t.reward for t in ep.turns] == pytest.approx([0.0, 1.0, 0.7, 0.4])
    assert ep.success and ep.termination == "solved" and ep.score == pytest.approx(2.1)
    assert ep.user_actions == 4 and ep.simulator == "offline"
    assert ep.turns[1].feedback.startswith("About destination")
