"""The LLM users (Telepathy, Turtle, Intention): prompts out, validated replies in, via a fake server."""

from __future__ import annotations

import asyncio
import json
import logging
from types import SimpleNamespace
from typing import Any

import pytest
from test_llm_client import KEY, FakeOpenAI, Reply  # the shared fake endpoint (tests/ is on sys.path)

from baorl.users import make_user
from baorl.users.base import IntentionUser, SimulatorError, TelepathyUser, TurtleUser
from baorl.users.client import LLMClient
from baorl.users.llm import LLMIntentionUser, LLMTelepathyUser, LLMTurtleUser

ENTITY = SimpleNamespace(
    id="entity_1",
    title="Banana",
    description="I am thinking of a fruit.",
    goal="Guess the fruit.",
    target_entity="Banana - a long curved yellow fruit",
    category="fruit",
)

STORY = SimpleNamespace(
    id="7",
    new_title="The Late Train",
    new_surface="Tom missed his train and smiled.",
    new_bottom="Tom had learned that the train would crash, so missing it saved his life.",
    evaluation=[
        {"statement": "Tom knew the train would crash.", "score": 0.6},
        SimpleNamespace(statement="Missing the train saved Tom's life.", score=0.4),
    ],
)

REQUEST = SimpleNamespace(
    id="r1",
    category="File Management",
    task="Write a script that finds the largest files.",
    missing_details=[
        SimpleNamespace(
            description="Directory to scan",
            importance="3",
            inquiry="Which directory?",
            options=["Current directory", "Home directory"],
        ),
        {"description": "Include subdirectories", "importance": "2", "inquiry": "Recurse?", "options": []},
        SimpleNamespace(
            description="Output format",
            importance="1",
            inquiry="What format?",
            options=["Names only", "Names and sizes"],
        ),
    ],
)


@pytest.fixture
def fake():
    server = FakeOpenAI()
    yield server
    server.close()


def client_for(fake: FakeOpenAI, tmp_path, **kw: Any) -> LLMClient:
    opts: dict[str, Any] = {
        "api_key": KEY,
        "cache_dir": tmp_path / "cache",
        "backoff": 0.01,
        "max_retries": 2,
    }
    opts.update(kw)
    return LLMClient("sim-model", fake.base_url, **opts)


def run(coro):
    return asyncio.run(coro)


def system_and_user(body: dict[str, Any]) -> tuple[str, str]:
    (system, user) = body["messages"]
    assert system["role"] == "system" and user["role"] == "user"
    return system["content"], user["content"]


# ------------------------------------------------------------------------------------------ shared


def test_users_satisfy_protocols_and_describe_themselves(fake, tmp_path):
    client = client_for(fake, tmp_path)
    host = fake.base_url.split("//")[1].split("/")[0]
    for cls, proto in (
        (LLMTelepathyUser, TelepathyUser),
        (LLMTurtleUser, TurtleUser),
        (LLMIntentionUser, IntentionUser),
    ):
        user = cls(client)
        assert isinstance(user, proto)
        assert user.label == "sim-model"
        assert user.detail == f"LLM simulator: sim-model @ {host}"
        assert KEY not in repr(user)


def test_make_user_builds_llm_users(fake, tmp_path):
    opts = {"base_url": fake.base_url, "api_key": KEY, "cache_dir": tmp_path, "backoff": 0.01}
    user = make_user("telepathy", "openai:sim-model", **opts)
    assert isinstance(user, LLMTelepathyUser) and user.label == "sim-model"
    assert isinstance(make_user("turtle-v0", "openai:gpt-4o", **opts), LLMTurtleUser)
    assert isinstance(make_user("intention", "openai:Qwen/Qwen3-8B", **opts), LLMIntentionUser)
    assert run(user.answer(ENTITY, "Is it yellow?")) == "Yes"
    assert fake.bodies[0]["model"] == "sim-model"


# ------------------------------------------------------------------------------------------ Telepathy


def test_telepathy_answer_prompt_and_normalisation(fake, tmp_path):
    replies = iter(
        ['{"reason": "bananas are yellow", "answer": "yes."}', "{'answer': 'NO'}", '{"answer": "Maybe"}']
    )
    fake.handler = lambda body: next(replies)
    user = LLMTelepathyUser(client_for(fake, tmp_path))
    assert run(user.answer(ENTITY, "Is it yellow?")) == "Yes"
    assert run(user.answer(ENTITY, "Is it red?")) == "No"
    assert run(user.answer(ENTITY, "Is it tasty?")) == "Maybe"
    system, message = system_and_user(fake.bodies[0])
    assert "Banana - a long curved yellow fruit" in system and "fruit" in system
    assert '"answer"' in system and "Maybe" in system
    assert "Is it yellow?" in message and "Banana" not in message


def test_telepathy_invalid_answer_is_retried_then_fails(fake, tmp_path):
    fake.script = [Reply(content='{"answer": "Probably"}')]
    fake.handler = lambda body: '{"answer": "No"}'
    user = LLMTelepathyUser(client_for(fake, tmp_path))
    assert run(user.answer(ENTITY, "Is it a vegetable?")) == "No"
    assert fake.count == 2

    fake.handler = lambda body: '{"answer": 42}'
    with pytest.raises(SimulatorError, match="answer"):
        run(user.answer(ENTITY, "Is it a berry?"))
    assert fake.count == 2 + 3


def test_telepathy_judge_guess(fake, tmp_path):
    def handler(body):
        _, message = system_and_user(body)
        return (
            '{"correct": true}'
            if "banana" in message.lower()
            else '{"reason": "different", "correct": "false"}'
        )

    fake.handler = handler
    user = LLMTelepathyUser(client_for(fake, tmp_path))
    assert run(user.judge_guess(ENTITY, "a banana")) is True
    assert run(user.judge_guess(ENTITY, "an apple")) is False
    system, _ = system_and_user(fake.bodies[0])
    assert "Banana - a long curved yellow fruit" in system and '"correct"' in system

    fake.handler = lambda body: '{"correct": "perhaps"}'
    with pytest.raises(SimulatorError):
        run(user.judge_guess(ENTITY, "a plantain"))


# ------------------------------------------------------------------------------------------ Turtle


def test_turtle_answer(fake, tmp_path):
    fake.handler = lambda body: '{"answer": "Yes"}'
    user = LLMTurtleUser(client_for(fake, tmp_path))
    assert run(user.answer(STORY, "Did Tom know something about the train?")) == "Yes"
    system, message = system_and_user(fake.bodies[0])
    for text in (STORY.new_title, STORY.new_surface, STORY.new_bottom):
        assert text in system
    assert "sparingly" in system and "Did Tom know" in message


def test_turtle_judge_scores_with_evidence(fake, tmp_path):
    explanation = "Tom learned the train was going to crash, and missing it saved his life."
    fake.handler = lambda body: json.dumps(
        {
            "judgements": [
                {"statement": 2, "evidence": "missing it saved his life", "score": "1"},
                {"statement": 1, "evidence": "learned the train was going to crash", "score": 0.5},
            ]
        }
    )
    user = LLMTurtleUser(client_for(fake, tmp_path))
    assert run(user.judge(STORY, explanation)) == [0.5, 1.0]  # reordered by statement number
    system, message = system_and_user(fake.bodies[0])
    assert "1. Tom knew the train would crash." in system
    assert "2. Missing the train saved Tom's life." in system
    assert "evidence" in system and explanation in message


def test_turtle_judge_without_textual_evidence_scores_zero(fake, tmp_path):
    vague = "Something unusual happened and it all turned out fine in the end, which explains his smile."
    fake.handler = lambda body: json.dumps(
        {
            "judgements": [
                {"evidence": "Tom knew the train would crash", "score": 1},  # not in the explanation
                {"evidence": "", "score": 0.5},
            ]
        }
    )
    user = LLMTurtleUser(client_for(fake, tmp_path))
    assert run(user.judge(STORY, vague)) == [0.0, 0.0]


@pytest.mark.parametrize(
    "bad",
    [
        {"judgements": [{"evidence": "x", "score": 1}]},  # one entry for two statements
        {"judgements": [{"score": 0.7}, {"score": 0}]},  # not 0, 0.5 or 1
        {"judgements": [1, 0]},  # entries are not objects
        {"scores": [1, 0]},  # wrong field
    ],
)
def test_turtle_judge_invalid_schema_is_retried(fake, tmp_path, bad):
    explanation = "Tom knew the train would crash."
    fake.script = [Reply(content=json.dumps(bad))]
    fake.handler = lambda body: (
        '{"judgements": [{"evidence": "Tom knew the train would crash", "score": 1}, {"score": 0}]}'
    )
    user = LLMTurtleUser(client_for(fake, tmp_path))
    assert run(user.judge(STORY, explanation)) == [1.0, 0.0]
    assert fake.count == 2


def test_turtle_judge_gives_up_on_persistent_bad_schema(fake, tmp_path):
    fake.handler = lambda body: '{"judgements": [{"score": 2}, {"score": 0}]}'
    user = LLMTurtleUser(client_for(fake, tmp_path))
    with pytest.raises(SimulatorError, match="0, 0.5 or 1"):
        run(user.judge(STORY, "anything"))
    assert fake.count == 3


# ------------------------------------------------------------------------------------------ Intention


def test_intention_reply_prompt_and_coverage(fake, tmp_path):
    fake.handler = lambda body: (
        '{"reason": "asks about folder", "covered": [0, "2"], "reply": "My home directory, please."}'
    )
    user = LLMIntentionUser(client_for(fake, tmp_path))
    reply, covered = run(user.reply(REQUEST, "Which folder, and how should results look?", [0, 1, 2]))
    assert reply == "My home directory, please."
    assert covered == [0, 2]
    system, message = system_and_user(fake.bodies[0])
    assert REQUEST.task in system and "File Management" in system
    assert "0. Directory to scan (possible choices: Current directory; Home directory)" in system
    assert "1. Include subdirectories" in system
    assert "still open" in system and "0, 1, 2" in system
    assert "Which folder" in message


def test_intention_covered_is_restricted_to_remaining(fake, tmp_path):
    fake.handler = lambda body: '{"covered": [0, 1], "reply": "Yes, include them."}'
    user = LLMIntentionUser(client_for(fake, tmp_path))
    assert run(user.reply(REQUEST, "Recurse into subfolders?", [1, 2])) == ("Yes, include them.", [1])


def test_intention_off_task_covers_nothing(fake, tmp_path):
    fake.handler = lambda body: '{"covered": [], "reply": "That is not really related to my request."}'
    user = LLMIntentionUser(client_for(fake, tmp_path))
    assert run(user.reply(REQUEST, "What is your favourite colour?", [0, 1, 2])) == (
        "That is not really related to my request.",
        [],
    )


@pytest.mark.parametrize(
    "bad",
    ['{"covered": [5], "reply": "ok"}', '{"covered": [0], "reply": ""}', '{"covered": "0", "reply": "ok"}'],
)
def test_intention_invalid_schema_is_retried(fake, tmp_path, bad):
    fake.script = [Reply(content=bad)]
    fake.handler = lambda body: '{"covered": [2], "reply": "Names and sizes."}'
    user = LLMIntentionUser(client_for(fake, tmp_path))
    assert run(user.reply(REQUEST, "What output format?", [0, 1, 2])) == ("Names and sizes.", [2])
    assert fake.count == 2


def test_intention_reply_is_cached(fake, tmp_path):
    fake.handler = lambda body: '{"covered": [2], "reply": "Names and sizes."}'
    user = LLMIntentionUser(client_for(fake, tmp_path))
    first = run(user.reply(REQUEST, "What output format?", [0, 1, 2]))
    again = run(LLMIntentionUser(client_for(fake, tmp_path)).reply(REQUEST, "What output format?", [0, 1, 2]))
    assert first == again and fake.count == 1
    # the open set is part of the prompt: another open set is another request
    run(user.reply(REQUEST, "What output format?", [2]))
    assert fake.count == 2


def test_simulator_failure_hides_key(fake, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    fake.handler = lambda body: Reply(status=500, error=f"upstream failed for key {KEY}")
    user = LLMTurtleUser(client_for(fake, tmp_path))
    with pytest.raises(SimulatorError) as info:
        run(user.answer(STORY, "Was it raining?"))
    assert "500" in str(info.value) and "sim-model" in str(info.value)
    assert KEY not in str(info.value) and KEY not in caplog.text and KEY not in repr(user)
