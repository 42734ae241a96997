"""The gym contract, over every registered gym, plus the registry's own rules."""

import pytest

from baorl.gyms import TaskDataError, get_task, gym_class, load_tasks, make, registry, spec
from baorl.gyms.checker import check_gym
from baorl.users import make_user

USERRL_FILES = {
    "function": ("function/functions_train.json", 460),
    "telepathy": ("telepathy/entities_train.json", 360),
    "turtle": ("turtle/stories_train.json", 423),
    "intention": ("intention/intentions_train.json", 380),
}


@pytest.mark.parametrize("name", sorted(registry()))
def test_check_gym_on_embedded_task(name):
    cls = gym_class(name)
    user = make_user(name, "offline") if cls.needs_user else None
    task = load_tasks(name, split="test")[0]
    check_gym(lambda: cls(task, user=user))


@pytest.mark.parametrize("name", sorted(USERRL_FILES))
def test_every_userrl_file_loads(name, userrl):
    rel, n = USERRL_FILES[name]
    tasks = load_tasks(name, userrl / rel)
    assert len(tasks) == n
    assert len({t.id for t in tasks}) == n, "task ids must be unique"
    assert get_task(name, tasks[-1].id, userrl / rel) == tasks[-1]


def test_registry_ids_and_lookup():
    assert spec("function-v0").name == "function"
    assert {s.id for s in registry().values()} == {"function-v0", "telepathy-v0", "turtle-v0", "intention-v0"}
    with pytest.raises(KeyError, match="unknown gym 'chess'"):
        spec("chess")
    with pytest.raises(KeyError, match="unknown gym"):
        spec("function-v7")


def test_make_errors_are_clear(tmp_path):
    with pytest.raises(KeyError, match="no task 'nope'"):
        make("function", task="nope")
    with pytest.raises(TaskDataError, match="no such data file"):
        make("function", data=tmp_path / "missing.json")
    with pytest.raises(ValueError, match="needs a user simulator"):
        make("telepathy")
    with pytest.raises(ValueError, match="unknown simulator"):
        make("telepathy", user="gpt-4o")
    with pytest.raises(ValueError, match="needs no user simulator"):
        make_user("function", "offline")


def test_user_choices_are_declared():
    for name in registry():
        assert "answer" in gym_class(name).user_choices or name == "intention"
    assert gym_class("function").user_choices == frozenset({"answer"})


def test_reward_in_observation_is_opt_in():
    gym = make("function")
    gym.reset(seed=0)
    obs, *_ = gym.step("[search] test")
    assert "Reward" not in obs
    gym = make("function", reward_in_obs=True)
    gym.reset(seed=0)
    obs, *_ = gym.step("[search] test")
    assert obs.endswith("Reward: 0")


def test_check_gym_names_the_broken_check():
    cls = gym_class("function")
    task = load_tasks("function", split="test")[0]

    class Silent(cls):
        def reset(self, *, seed=None, options=None):
            _obs, info = super().reset(seed=seed, options=options)
            return "", info

    with pytest.raises(AssertionError, match="^check_reset: reset must return a non-empty task prompt"):
        check_gym(lambda: Silent(task))


def test_gyms_alone_say_which_simulators_they_have():
    assert {n: s.simulator for n, s in registry().items()} == {
        "function": "none", "telepathy": "offline, LLM", "turtle": "offline~, LLM", "intention": "offline~, LLM"}
    for name, s in registry().items():
        assert gym_class(name).needs_user == (s.offline_user is not None or s.llm_user is not None)
