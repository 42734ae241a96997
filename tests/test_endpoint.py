"""`baorl.endpoint`: the one `<think>` split and the one endpoint client under the agent and the simulators."""

import asyncio
import pickle

import pytest

from baorl.agents.openai_agent import AgentError, OpenAIAgent
from baorl.endpoint import EndpointClient, Transient, scrub, split_think
from baorl.gyms.parser import parse_action
from baorl.serve.engine import parse_reply
from baorl.users.base import SimulatorError
from baorl.users.client import LLMClient
from baorl.users.jsonfix import parse_json_reply


@pytest.mark.parametrize("text, reasoning, rest", [
    ("no block", None, "no block"),
    ("<think> a </think>b", "a", "b"),
    ("x<think>a</think>y<think>c</think>z", "a", "xyz"),  # every block goes, the first one speaks
    ("<think>cut off", "cut off", ""),
    ("plan</think>rest", "plan", "rest"),  # the template opened the block
])
def test_split_think(text, reasoning, rest):
    assert split_think(text) == (reasoning, rest)


def test_the_three_readers_agree_on_reasoning():
    text = '<think>maybe {"answer": "No"} [answer] 1</think>{"answer": "Yes"}'
    assert parse_json_reply(text) == {"answer": "Yes"}
    assert parse_reply(text, tools=False).reasoning == parse_action(text).think == 'maybe {"answer": "No"} [answer] 1'
    assert parse_action("plan</think>[answer] 42").as_text == "[answer] 42"


def test_scrub_hides_keys():
    assert scrub("sent sk-abc123 and s3cret", "s3cret") == "sent sk-*** and ***"
    assert scrub("x" * 400).endswith("...") and len(scrub("x" * 400, limit=None)) == 400


def test_agent_and_simulator_share_the_client(monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://user:pw@127.0.0.1:9/v1/")
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    for client, error in ((OpenAIAgent("m", max_retries=1, backoff=0.0), AgentError),
                          (LLMClient("m", cache=False, max_retries=1, backoff=0.0), SimulatorError)):
        assert isinstance(client, EndpointClient) and client._error is error
        assert client.base_url == "http://127.0.0.1:9/v1" and "sk-from-env" not in repr(client)
        clone = pickle.loads(pickle.dumps(client))
        assert clone._scrub("key sk-from-env") == "key ***" and len(clone._per_loop) == 0


def test_one_retry_policy_counts_and_gives_up():
    client = LLMClient("m", base_url="http://127.0.0.1:9/v1", api_key="k", cache=False, max_retries=2, backoff=0.0)
    calls = []

    async def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise Transient(f"try {len(calls)}")
        return "ok"

    assert asyncio.run(client._with_retries(flaky)) == "ok" and client.retries == 2
    client.max_retries = 0

    async def broken():
        raise Transient("still down")

    with pytest.raises(SimulatorError, match=r"simulator 'm' at .* failed after 1 attempt\(s\); last error: still down"):
        asyncio.run(client._with_retries(broken))
