"""Telepathy gym, its embedded set, the offline user and the scripted questioner (spec: gyms.md)."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest

from baorl.agents.base import tool_call_text
from baorl.agents.scripted import ReplayAgent as Script
from baorl.agents.telepathy_questioner import TelepathyQuestioner
from baorl.gyms import get_task, load_tasks, make
from baorl.gyms.base import TaskDataError
from baorl.gyms.telepathy import TelepathyGym, TelepathyTask, embedded_set
from baorl.runs.play import play_episode
from baorl.users import SimulatorError, TelepathyUser, make_user
from baorl.users.telepathy_offline import OfflineTelepathyUser, normalize

SHARED = Path(__file__).resolve().parents[2] / "shared" / "userrl"
USERRL_FILE = SHARED / "telepathy" / "entities_train.json"
YES_NO = {True: "Yes", False: "No", None: "Maybe"}


@pytest.fixture(scope="module")
def user() -> OfflineTelepathyUser:
    return OfflineTelepathyUser()


@pytest.fixture(scope="module")
def by_title() -> dict[str, TelepathyTask]:
    return {t.title: t for t in TelepathyGym.embedded_tasks("all")}


def ask(user: OfflineTelepathyUser, task: TelepathyTask, question: str) -> str:
    return asyncio.run(user.answer(task, question))


def guess(user: OfflineTelepathyUser, task: TelepathyTask, text: str) -> bool:
    return asyncio.run(user.judge_guess(task, text))




class FailingUser:
    label = "failing"
    detail = "raises on every call"

    async def answer(self, task: Any, question: str) -> str:
        raise SimulatorError("endpoint down after 3 retries")

    async def judge_guess(self, task: Any, guess: str) -> bool:
        raise SimulatorError("endpoint down after 3 retries")


class RamblingUser(FailingUser):
    async def answer(self, task: Any, question: str) -> str:
        return "Well, it depends on how you look at it"


# ---- the gym's rules ----------------------------------------------------------------------------
def test_correct_guess_rewards_one_and_solves(user, by_title):
    gym = TelepathyGym(by_title["Giraffe"], user=user)
    gym.reset(seed=0)
    obs, reward, terminated, truncated, info = gym.step(tool_call_text("answer", "giraffe", "sure"))
    assert (reward, terminated, truncated) == (1.0, True, False)
    assert info["termination"] == "solved" and info["user_involved"] is True
    with pytest.raises(RuntimeError, match="episode is over"):
        gym.step("[answer] giraffe")


@pytest.mark.parametrize("task", TelepathyGym.embedded_tasks("all"), ids=lambda t: t.id)
def test_wrong_guess_scores_zero_and_never_leaks_the_target(user, task):
    gym = TelepathyGym(task, user=user)
    gym.reset(seed=0)
    wrong = "Dog" if task.title != "Dog" else "Cat"
    obs, reward, terminated, truncated, info = gym.step(f"[answer] {wrong}")
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert info["user_involved"] is True and info["correct"] is False
    words = set(normalize(obs).split())
    secret = set(normalize(task.title).split())  # every word of the name, and the gloss's content words
    secret |= {w for text in [task.target_entity, *task.synonyms] for w in normalize(text).split() if len(w) > 4}
    assert not words & secret, f"feedback leaks {words & secret}"
    # the agent may try again and still win
    assert gym.step(f"[answer] {task.title}")[1] == 1.0


def test_questions_get_yes_no_maybe_and_reward_zero(user, by_title):
    gym = TelepathyGym(by_title["Penguin"], user=user)
    gym.reset(seed=0)
    replies = []
    for q in ["Is it a bird?", "Can it fly?", "Does it live mainly in water?"]:
        obs, reward, terminated, truncated, info = gym.step(f"[action] {q}")
        assert reward == 0.0 and not terminated and not truncated
        assert info["user_involved"] is False  # only guesses need the user's judgement (U(tau))
        replies.append(obs)
    assert replies == ["Yes", "No", "Maybe"]


def test_turn_limit_is_twelve_and_truncates(user, by_title):
    gym = TelepathyGym(by_title["Piano"], user=user)
    obs, info = gym.reset(seed=0)
    assert info["max_turns"] == 12 == TelepathyGym.default_max_turns
    for turn in range(1, 13):
        obs, reward, terminated, truncated, info = gym.step("[action] Does it have strings?")
        assert obs == "Yes" and reward == 0.0 and not terminated
        assert truncated is (turn == 12)
    assert info["termination"] == "turn_limit"


def test_search_and_bad_input_get_a_hint_and_the_episode_goes_on(user, by_title):
    gym = TelepathyGym(by_title["Japan"], user=user)
    gym.reset(seed=0)
    obs, reward, terminated, truncated, info = gym.step("[search] capital of Japan")
    assert reward == 0.0 and not (terminated or truncated) and info["valid"] is False
    assert "'action'" in obs and "'answer'" in obs
    obs, *_ = gym.step("I think it is Japan")
    assert "no tool call found" in obs
    assert gym.step("[answer] Japan")[1] == 1.0


def test_gym_needs_a_user(by_title):
    with pytest.raises(ValueError, match="needs a user simulator"):
        TelepathyGym(by_title["Dog"])


@pytest.mark.parametrize("source", ["embedded", "userrl"])
def test_prompts_never_show_title_or_target(user, source):
    tasks = TelepathyGym.embedded_tasks("all") if source == "embedded" else TelepathyGym.load_tasks(USERRL_FILE)
    for task in tasks:
        gym = TelepathyGym(task, user=user)
        obs, info = gym.reset(seed=0)
        seen = (obs + "\n" + info["system_prompt"]).lower()
        assert not re.search(rf"\b{re.escape(task.title.lower())}\b", seen), task.id
        assert task.target_entity.lower() not in seen, task.id
        assert f"category: {task.category.replace('_', ' ')}".lower() in obs.lower()
        assert task.description.strip() in obs and "12 turns" in obs
        assert "12 turns" in info["system_prompt"] and "<think>" in info["system_prompt"]


def test_simulator_error_ends_the_episode_as_simulator_error(by_title):
    gym = TelepathyGym(by_title["Lemon"], user=FailingUser())
    ep = play_episode(gym, Script(["[action] Is it yellow?"]))
    assert ep.termination == "simulator_error" and not ep.success and ep.score == 0.0
    assert ep.simulator == "failing" and len(ep.turns) == 1


def test_a_reply_that_is_not_yes_no_maybe_is_a_simulator_error(by_title):
    gym = TelepathyGym(by_title["Lemon"], user=RamblingUser())
    gym.reset(seed=0)
    obs, reward, terminated, truncated, info = gym.step("[action] Is it yellow?")
    assert truncated and info["termination"] == "simulator_error"
    assert "not Yes, No or Maybe" in info["simulator_error"]


def test_offline_user_on_a_userrl_task_records_simulator_error():
    task = get_task("telepathy", "Saturn", data=USERRL_FILE)
    gym = make("telepathy", task=task, user="offline")
    ep = play_episode(gym, Script(["[action] Does it have rings?"]))
    assert ep.termination == "simulator_error" and ep.simulator == "offline"
    gym.reset(seed=0)
    info = gym.step("[answer] Saturn")[4]
    assert "openai:MODEL" in info["simulator_error"]


def test_same_seed_gives_identical_records(user, by_title):
    eps = [play_episode(TelepathyGym(by_title["Kiwi"], user=user), TelepathyQuestioner(), seed=7) for _ in range(2)]
    assert eps[0].model_dump() == eps[1].model_dump()
    assert eps[0].success


# ---- data ---------------------------------------------------------------------------------------
def test_loads_all_360_userrl_records():
    tasks = TelepathyGym.load_tasks(USERRL_FILE)
    assert len(tasks) == 360 and len({t.id for t in tasks}) == 360
    raw = json.loads(USERRL_FILE.read_text())
    assert [t.id for t in tasks] == [r["id"] for r in raw]
    assert all(t.attributes is None and t.title and t.category for t in tasks)
    saturn = get_task("telepathy", "Saturn", data=USERRL_FILE)  # UserRL addresses tasks by title
    assert saturn.id == "entity_034" and saturn.category == "planet"
    assert get_task("telepathy", "entity_034", data=USERRL_FILE).title == "Saturn"


def _write(tmp_path: Path, content: Any) -> Path:
    p = tmp_path / "entities.json"
    p.write_text(content if isinstance(content, str) else json.dumps(content))
    return p


GOOD = {"id": "e1", "title": "Moon", "description": "I am thinking of a celestial body.",
        "goal": "Guess it.", "target_entity": "Moon - Earth's satellite", "category": "celestial body"}


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", r"not valid JSON"),
    ({"e1": GOOD}, r"expected a JSON list"),
    ([GOOD, "Moon"], r"record 1 is not a JSON object"),
    ([GOOD, {k: v for k, v in GOOD.items() if k != "title"} | {"id": "e2"}], r"record 1 \(id 'e2'\): title"),
    ([GOOD | {"category": "  "}], r"record 0 \(id 'e1'\): category"),
    ([GOOD, GOOD | {"title": "Sun"}], r"record 1 \(id 'e1'\): duplicate id"),
    ([GOOD, GOOD | {"id": "e2"}], r"record 1 \(id 'e2'\): duplicate title"),
])
def test_bad_files_raise_task_data_error_naming_file_and_record(tmp_path, content, message):
    path = _write(tmp_path, content)
    with pytest.raises(TaskDataError, match=message) as e:
        TelepathyGym.load_tasks(path)
    assert str(path) in str(e.value)


def test_missing_file_and_empty_list(tmp_path):
    with pytest.raises(TaskDataError, match="no such data file"):
        load_tasks("telepathy", tmp_path / "nope.json")
    with pytest.raises(TaskDataError, match="no tasks"):
        load_tasks("telepathy", _write(tmp_path, []))


def test_embedded_splits():
    train, test, every = (TelepathyGym.embedded_tasks(s) for s in ("train", "test", "all"))
    assert (len(train), len(test), len(every)) == (63, 21, 84)
    assert {t.id for t in train} | {t.id for t in test} == {t.id for t in every}
    assert not {t.id for t in train} & {t.id for t in test}
    assert [t.id for t in every] == [f"tele-{i:03d}" for i in range(84)]
    assert {t.category for t in test} == {t.category for t in every}  # every category is tested
    assert [t.id for t in load_tasks("telepathy")] == [t.id for t in test]  # registry default: test
    with pytest.raises(ValueError, match="unknown split"):
        TelepathyGym.embedded_tasks("dev")


def test_embedded_data_integrity():
    data = embedded_set()
    assert len(data.categories) >= 6
    names: dict[str, str] = {}
    for t in data.entities:
        bank = data.categories[t.category].attributes
        assert set(t.attributes) == set(bank), t.id
        assert t.target_entity.startswith(t.title + " - ")
        for n in [t.title, *t.synonyms]:
            assert names.setdefault(normalize(n), t.id) == t.id, f"name {n!r} used twice"
    for cat, spec in data.categories.items():
        assert len(spec.attributes) >= 15, cat
        ents = [t for t in data.entities if t.category == cat]
        assert len(ents) >= 10
        for a, b in itertools.combinations(ents, 2):
            assert any(a.attributes[k] is not None and b.attributes[k] is not None
                       and a.attributes[k] != b.attributes[k] for k in spec.attributes), (a.title, b.title)
        for key in spec.attributes:  # no dead questions: every answer differs for some pair
            assert len({t.attributes[key] for t in ents}) > 1, (cat, key)


# ---- the offline user ---------------------------------------------------------------------------
def test_offline_user_is_made_by_the_registry_and_fits_the_protocol():
    u = make_user("telepathy", "offline")
    assert isinstance(u, OfflineTelepathyUser) and isinstance(u, TelepathyUser)
    assert u.label == "offline" and "cannot" in u.detail and "openai:MODEL" in u.detail
    with pytest.raises(TypeError, match="no options"):
        OfflineTelepathyUser(temperature=0.5)


def test_offline_user_answers_every_bank_question_from_the_table(user):
    data = embedded_set()
    for t in data.entities:
        for key, spec in data.categories[t.category].attributes.items():
            assert ask(user, t, spec.question) == YES_NO[t.attributes[key]], (t.title, key)


@pytest.mark.parametrize(("title", "question", "reply"), [
    ("Lion", "is it a MAMMAL", "Yes"),
    ("Lion", "Isn't it a mammal?", "Yes"),
    ("Lion", "Does it have four legs?", "Yes"),
    ("Lion", "Does it have more than four legs?", "Maybe"),
    ("Lion", "Is it bigger than a human?", "Yes"),
    ("Lion", "Is it smaller than a person?", "No"),
    ("Lion", "Does it eat fish?", "Maybe"),
    ("Lion", "Is it not a mammal?", "Maybe"),
    ("Lion", "Can it breathe underwater?", "No"),
    ("Lion", "Is it a large carnivorous mammal?", "Yes"),
    ("Lion", "Is it a mammal or a bird?", "Yes"),
    ("Lion", "Is it a bird or a fish?", "No"),
    ("Lion", "Is it a lion?", "Yes"),
    ("Lion", "Is it a lion or a tiger?", "Yes"),
    ("Lion", "Is it a cat?", "No"),
    ("Lion", "Is it an animal?", "Yes"),
    ("Lion", "Is it a fruit?", "No"),
    ("Lion", "Does its name start with the letter L?", "Yes"),
    ("Lion", "Does it start with a?", "No"),
    ("Lion", "Was it born in 1990?", "Maybe"),
    ("Banana", "Is it yellow?", "Yes"),
    ("Banana", "Is it an orange?", "No"),
    ("Banana", "Can you eat the skin?", "No"),
    ("Banana", "Is it bigger than a grape?", "Maybe"),
    ("United States", "Is it the USA?", "Yes"),
    ("United States", "Does it have a large population?", "Yes"),
    ("United States", "Does it have a small population?", "Maybe"),
    ("United States", "Is it in the northern hemisphere?", "Yes"),
    ("United States", "Is it in the EU?", "No"),
    ("Television", "Is it a TV?", "Yes"),
    ("Television", "Can you watch movies on it?", "Yes"),
    ("Bicycle", "Does it have more than two wheels?", "Maybe"),
    ("Bicycle", "Is it heavy?", "No"),
    ("Saxophone", "Does it have keys?", "Yes"),
    ("Saxophone", "Is it played with a keyboard?", "No"),
])
def test_offline_user_matching(user, by_title, title, question, reply):
    assert ask(user, by_title[title], question) == reply


@pytest.mark.parametrize(("title", "text", "correct"), [
    ("Lion", "lion", True),
    ("Lion", "Lion!", True),
    ("Lion", "I think you are thinking of a lion.", True),
    ("Lion", "The lion - king of the jungle", True),
    ("Lion", "lions", True),
    ("Lion", "lioness", True),
    ("Lion", "mountain lion", False),
    ("Lion", "lion or tiger", False),
    ("Lion", "lion, cat", False),
    ("Lion", "cat", False),
    ("Cherry", "cherries", True),
    ("Hot Air Balloon", "a hot-air balloon", True),
    ("United States", "U.S.A.", True),
    ("Canada", "Canada, in North America", True),
    ("Banana", "Banana - a fruit", True),
    ("Banana", "banana bread", False),
    ("Mexico", "México", True),
])
def test_offline_user_judges_guesses_by_name(user, by_title, title, text, correct):
    assert guess(user, by_title[title], text) is correct


def test_offline_user_refuses_tasks_without_tables(user):
    task = TelepathyGym.load_tasks(USERRL_FILE)[0]
    for call in (user.answer(task, "Is it a painting?"), user.judge_guess(task, task.title)):
        with pytest.raises(SimulatorError, match=r"openai:MODEL"):
            asyncio.run(call)


# ---- the questioner -----------------------------------------------------------------------------
def test_questioner_solves_the_embedded_set(user):
    tasks = TelepathyGym.embedded_tasks("all")
    eps = [play_episode(TelepathyGym(t, user=user), TelepathyQuestioner()) for t in tasks]
    rate = sum(e.success for e in eps) / len(eps)
    assert rate >= 0.95, f"success {rate:.3f}"
    for e in eps:
        assert len(e.turns) <= 12 and e.policy == "scripted:telepathy-questioner"
        for i, turn in enumerate(e.turns, 1):
            assert re.match(rf"Memory: .*Hypotheses: .*Plan: turn {i} of 12\.", turn.think), turn.think
        if e.success:
            assert e.user_actions == 1  # it guesses only once it is sure


def test_questioner_drops_a_rejected_guess_and_guesses_on_its_last_turn(user, by_title):
    agent = TelepathyQuestioner()
    gym = TelepathyGym(by_title["Cat"], user=user, max_turns=3)
    obs, info = gym.reset(seed=0)
    state = agent.start(info["system_prompt"], obs, info)
    out, state = agent.respond(obs, state)
    obs, *_ = gym.step(out)
    out, state = agent.respond(obs, state)
    obs, *_ = gym.step(out)
    out, state = agent.respond(obs, state)
    assert "[finish]" not in out and '"answer"' in out and "last turn" in out

    # a rejected guess is never made again
    state = agent.start("", "I am thinking of a fruit.\nCategory: fruit", {"max_turns": 12})
    state.pending = ("guess", "Apple")
    out, state = agent.respond("No, that is not what I am thinking of.", state)
    assert state.rejected == ["Apple"] and "rejected guesses: Apple" in out


def test_questioner_stops_on_an_unknown_category():
    task = get_task("telepathy", "Saturn", data=USERRL_FILE)
    gym = TelepathyGym(task, user=FailingUser())
    ep = play_episode(gym, TelepathyQuestioner())
    assert ep.termination == "finish" and len(ep.turns) == 1
