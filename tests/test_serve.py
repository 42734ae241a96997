"""`baorl serve` end to end: a real uvicorn server on a tiny model fitted to known replies.

The fixture fits a tiny random Llama (SmolLM2's vocabulary) for a few dozen AdamW steps until its
greedy replies to three prompts, rendered exactly as the server renders them, are fixed strings:
a plain chat, a Function-gym turn (a think block and one `interact_with_env` call) and a
Telepathy host question in JSON mode. The real `openai` SDK, `LLMClient` + `LLMTelepathyUser`
and `OpenAIAgent` then talk to that server over HTTP.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import socket
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import httpx
import openai
import pytest
import torch

from baorl.agents.openai_agent import AgentError, OpenAIAgent
from baorl.gyms.function import FunctionGym, FunctionTask
from baorl.gyms.parser import parse_action
from baorl.gyms.tool import INTERACT_TOOL
from baorl.models import chat_template, load_model, load_tokenizer, tiny_model
from baorl.runs.play import aplay_episode
from baorl.serve import add_serve_parser, serve_main
from baorl.serve.app import BackgroundServer, check_host, create_app, is_loopback, run_server
from baorl.serve.engine import Engine, render_prompt
from baorl.users.client import LLMClient
from baorl.users.llm import LLMTelepathyUser

NAME = "tiny-overfit"
KEY = "sk-local-SECRET-9876543210"
TASK42 = FunctionTask(id="t42", rule="(a + b) * c - d", test_case=[4, 2, 7, 0], expected_result=42)
HIDDEN = SimpleNamespace(category="fruit", target_entity="apple")
QUESTION = "Is it a fruit?"

PLAIN = [{"role": "system", "content": "You are a terse assistant."}, {"role": "user", "content": "Say hello."}]
PLAIN_REPLY = "Hello there!"
CALL = {"name": "interact_with_env", "arguments": {"choice": "answer", "content": "42"}}
THINK = "The answer is 42."
TOOL_REPLY = f"<think>\n{THINK}\n</think>\n<tool_call>\n{json.dumps(CALL)}\n</tool_call>"
JSON_REPLY = '{"answer": "Yes"}'


def function_messages() -> list[dict[str, str]]:
    gym = FunctionGym(TASK42)
    obs, info = gym.reset(seed=0)
    return [{"role": "system", "content": info["system_prompt"]}, {"role": "user", "content": obs}]


def telepathy_messages() -> list[dict[str, str]]:
    """The exact messages `LLMTelepathyUser.answer` sends, captured with a stand-in client."""
    sent: list[list[dict[str, str]]] = []

    class Capture:
        label, host = "capture", "capture"

        async def chat_json(self, messages: list[dict[str, str]], validate: Any) -> Any:
            sent.append(messages)
            return validate({"answer": "Yes"})

    asyncio.run(LLMTelepathyUser(Capture()).answer(HIDDEN, QUESTION))  # type: ignore[arg-type]
    return sent[0]


def _overfit(model: Any, examples: list[tuple[list[int], list[int]]], max_steps: int = 300) -> int:
    """AdamW on the reply tokens until greedy decoding writes every reply, by a clear margin.

    Teacher-forced: when every reply token is the argmax after its prefix, by at least 2 logits
    over the runner-up, greedy generation reproduces the reply (and float noise from batching or
    the KV cache cannot flip it). Returns the steps taken (about 80 for these three replies).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: one thread is faster than two that contend
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    seqs = [(torch.tensor([p + t]), len(p), torch.tensor(t)) for p, t in examples]
    try:
        for step in range(max_steps):
            opt.zero_grad()
            loss, margin = torch.zeros(()), float("inf")
            for ids, n, target in seqs:
                logits = model.lm_head(model.model(input_ids=ids).last_hidden_state[0, n - 1: -1])
                loss = loss + torch.nn.functional.cross_entropy(logits, target)
                with torch.no_grad():
                    right = logits.gather(1, target[:, None])[:, 0]
                    best_other = logits.scatter(1, target[:, None], float("-inf")).max(-1).values
                    margin = min(margin, float((right - best_other).min()))
            if margin > 2.0:
                return step
            loss.backward()
            opt.step()
        raise AssertionError(f"the tiny model did not fit its replies in {max_steps} steps")
    finally:
        model.eval()
        torch.set_num_threads(threads)


@dataclass
class Served:
    server: BackgroundServer
    engine: Engine
    tok: Any
    template: str

    @property
    def url(self) -> str:
        return self.server.base_url

    def prompt_tokens(self, messages: list[dict[str, Any]], tools: Any = None, json_mode: bool = False) -> int:
        text = render_prompt(self.tok, self.template, messages, tools, json_mode=json_mode)
        return len(self.tok(text, add_special_tokens=False)["input_ids"])

    def tokens(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Any:
    tok = load_tokenizer("embedded")
    model = tiny_model(tok)
    template = chat_template(tok, "auto")
    eos = tok.convert_tokens_to_ids("<|im_end|>")

    def example(messages: list[dict[str, str]], reply: str, tools: Any = None, json_mode: bool = False) -> Any:
        prompt = render_prompt(tok, template, messages, tools, json_mode=json_mode)
        return tok(prompt, add_special_tokens=False)["input_ids"], tok(reply, add_special_tokens=False)["input_ids"] + [eos]

    examples = [
        example(PLAIN, PLAIN_REPLY),
        example(function_messages(), TOOL_REPLY, [INTERACT_TOOL]),
        example(telepathy_messages(), JSON_REPLY, json_mode=True),
    ]
    _overfit(model, examples)
    path = tmp_path_factory.mktemp("tiny-overfit")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    lm, tok2 = load_model(str(path))  # served as `baorl serve PATH` would load it
    engine = Engine(lm, tok2, max_batch=8, batch_wait=0.05)
    template2 = chat_template(tok2, "auto")
    assert template2 == template
    with BackgroundServer(create_app(engine, template2, NAME)) as server:
        yield Served(server, engine, tok2, template2)


@pytest.fixture
def client(served: Served) -> openai.OpenAI:
    return openai.OpenAI(base_url=served.url, api_key="EMPTY", max_retries=0)


# ---------------------------------------------------------------------------------------- the protocol


def test_plain_completion_schema_and_usage(served: Served, client: openai.OpenAI) -> None:
    r = client.chat.completions.create(model=NAME, messages=PLAIN, temperature=0)  # type: ignore[arg-type]
    assert r.id.startswith("chatcmpl-") and r.object == "chat.completion" and r.model == NAME
    assert abs(r.created - time.time()) < 60
    choice = r.choices[0]
    assert choice.index == 0 and choice.finish_reason == "stop"
    assert choice.message.role == "assistant" and choice.message.content == PLAIN_REPLY
    assert choice.message.tool_calls is None and getattr(choice.message, "reasoning_content", None) is None
    assert r.usage is not None
    assert r.usage.prompt_tokens == served.prompt_tokens(PLAIN)
    assert r.usage.completion_tokens == len(served.tokens(PLAIN_REPLY)) + 1  # + the end-of-turn token
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_tool_call_and_reasoning_are_split_out(served: Served, client: openai.OpenAI) -> None:
    msgs = function_messages()
    r = client.chat.completions.create(model=NAME, messages=msgs, tools=[INTERACT_TOOL], temperature=0)  # type: ignore[arg-type,list-item]
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert getattr(choice.message, "reasoning_content", None) == THINK
    (call,) = choice.message.tool_calls or []
    assert call.id.startswith("call_") and call.type == "function"
    assert call.function.name == "interact_with_env"
    assert json.loads(call.function.arguments) == CALL["arguments"]
    assert r.usage is not None
    assert r.usage.prompt_tokens == served.prompt_tokens(msgs, [INTERACT_TOOL])
    assert r.usage.completion_tokens == len(served.tokens(TOOL_REPLY))  # stopped at </tool_call>

    # tool_choice="none": the tools leave the prompt, and nothing is parsed as a call
    r = client.chat.completions.create(model=NAME, messages=msgs, tools=[INTERACT_TOOL],  # type: ignore[arg-type,list-item]
                                       tool_choice="none", temperature=0, max_tokens=2)
    assert r.usage is not None and r.usage.prompt_tokens == served.prompt_tokens(msgs)
    assert r.choices[0].message.tool_calls is None and r.choices[0].finish_reason == "length"


def test_max_tokens_stop_and_seed(served: Served, client: openai.OpenAI) -> None:
    ids = served.tokens(PLAIN_REPLY)
    r = client.chat.completions.create(model=NAME, messages=PLAIN, temperature=0, max_tokens=2)  # type: ignore[arg-type]
    assert r.choices[0].finish_reason == "length"
    assert r.choices[0].message.content == served.tok.decode(ids[:2])
    assert r.usage is not None and r.usage.completion_tokens == 2

    r = client.chat.completions.create(model=NAME, messages=PLAIN, temperature=0, stop=[" there"])  # type: ignore[arg-type]
    assert r.choices[0].finish_reason == "stop" and r.choices[0].message.content == "Hello"
    assert r.usage is not None and r.usage.completion_tokens == 2  # "Hello", " there"

    def sample() -> str | None:
        return client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "Write anything."}],
                                              temperature=1.5, seed=7, max_tokens=12).choices[0].message.content

    assert sample() == sample()


def test_stream_sends_one_reply_as_chunks(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(model=NAME, messages=PLAIN, temperature=0, stream=True,  # type: ignore[arg-type]
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert text == PLAIN_REPLY and finishes == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4


def test_models_and_health(served: Served, client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == [NAME]
    assert client.models.retrieve(NAME).id == NAME
    assert httpx.get(served.url.removesuffix("/v1") + "/health").json()["status"] == "ok"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ("not json", None),
        ([1, 2], None),
        ({"model": NAME}, "messages"),
        ({"model": NAME, "messages": "hi"}, "messages"),
        ({"model": NAME, "messages": []}, "messages"),
        ({"model": NAME, "messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
        ({"model": NAME, "messages": [{"role": "user"}]}, "messages[0].content"),
        ({"model": NAME, "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages[0].content"),
        ({"model": NAME, "messages": PLAIN, "n": 2}, "n"),
        ({"model": NAME, "messages": PLAIN, "temperature": -1}, "temperature"),
        ({"model": NAME, "messages": PLAIN, "max_tokens": 0}, "max_tokens"),
        ({"model": NAME, "messages": PLAIN, "tools": [INTERACT_TOOL], "tool_choice": "required"}, "tool_choice"),
        ({"model": NAME, "messages": PLAIN, "tools": [{"type": "function"}]}, "tools[0]"),
        ({"model": NAME, "messages": PLAIN, "response_format": {"type": "xml"}}, "response_format"),
        ({"model": NAME, "messages": PLAIN, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"model": NAME, "messages": PLAIN, "logprobs": True}, "logprobs"),
    ],
)
def test_malformed_requests_get_400(served: Served, body: Any, param: str | None) -> None:
    raw = body if isinstance(body, str) else json.dumps(body)
    r = httpx.post(served.url + "/chat/completions", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["message"]
    assert err["param"] == param


@pytest.mark.parametrize("name", ["deep array", "deep inside a message", "deep but parseable", "not UTF-8"])
def test_bodies_that_fail_to_parse_get_400(served: Served, name: str) -> None:
    """A deeply nested body was once a RecursionError and a 500."""
    bodies = {
        "deep array": "[" * 100_000 + "]" * 100_000,
        "deep inside a message": json.dumps({"model": NAME, "messages": [{"role": "user", "content": "hi", "x": []}]})
        .replace("[]", "[" * 5000 + "]" * 5000),
        "deep but parseable": json.dumps({"model": NAME, "messages": PLAIN, "chat_template_kwargs": {"x": []}})
        .replace("[]", "[" * 900 + "]" * 900),
        "not UTF-8": b"\xff\xfe{}",
    }
    r = httpx.post(served.url + "/chat/completions", content=bodies[name], headers={"Content-Type": "application/json"},
                   timeout=60)
    assert r.status_code in (200, 400), f"{name}: HTTP {r.status_code} {r.text[:300]}"
    if name != "deep but parseable":
        assert r.status_code == 400, f"{name}: HTTP {r.status_code}"
        err = r.json()["error"]
        assert err["type"] == "invalid_request_error" and "not valid JSON" in err["message"], err


def test_unknown_model_and_route_get_404(served: Served, client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="serves 'tiny-overfit'"):
        client.chat.completions.create(model="gpt-4o", messages=PLAIN)  # type: ignore[arg-type]
    r = httpx.get(served.url + "/nothing")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_concurrent_requests_share_a_batch(served: Served) -> None:
    reqs = [dict(messages=PLAIN), dict(messages=PLAIN, max_tokens=2),
            dict(messages=telepathy_messages(), response_format={"type": "json_object"}),
            dict(messages=function_messages(), tools=[INTERACT_TOOL])]

    async def main() -> list[Any]:
        c = openai.AsyncOpenAI(base_url=served.url, api_key="EMPTY", max_retries=0)
        out = await asyncio.gather(*(c.chat.completions.create(model=NAME, temperature=0, **r) for r in reqs))
        await c.close()
        return out

    before = served.engine.batches
    plain, short, host, tool = asyncio.run(main())
    assert plain.choices[0].message.content == PLAIN_REPLY
    assert short.choices[0].message.content == served.tok.decode(served.tokens(PLAIN_REPLY)[:2])
    assert host.choices[0].message.content == JSON_REPLY  # left-padded beside shorter prompts
    assert tool.choices[0].finish_reason == "tool_calls"
    # the three plain greedy requests share one generate call; the tool request needs its own
    assert served.engine.batches - before == 2 and served.engine.largest_batch >= 3


def test_api_key_is_required_only_when_set(served: Served) -> None:
    engine = Engine(served.engine.model, served.tok)
    with BackgroundServer(create_app(engine, served.template, NAME, api_key=KEY)) as server:
        for key in ("EMPTY", KEY + "x"):
            with pytest.raises(openai.AuthenticationError) as e:
                openai.OpenAI(base_url=server.base_url, api_key=key, max_retries=0).models.list()
            assert KEY not in str(e.value)
        ok = openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0)
        r = ok.chat.completions.create(model=NAME, messages=PLAIN, temperature=0)  # type: ignore[arg-type]
        assert r.choices[0].message.content == PLAIN_REPLY
        assert httpx.get(server.base_url.removesuffix("/v1") + "/health").status_code == 200
    # without api_key any Authorization header is accepted and ignored
    r = httpx.get(served.url + "/models", headers={"Authorization": "Bearer whatever"})
    assert r.status_code == 200


def test_binds_loopback_by_default(served: Served) -> None:
    assert served.server.server.servers[0].sockets[0].getsockname()[0] == "127.0.0.1"
    assert inspect.signature(run_server).parameters["host"].default == "127.0.0.1"
    assert inspect.signature(BackgroundServer).parameters["host"].default == "127.0.0.1"
    import argparse

    sub = argparse.ArgumentParser().add_subparsers()
    args = add_serve_parser(sub).parse_args(["embedded"])
    assert (args.host, args.port, args.chat_template) == ("127.0.0.1", 8000, "auto")
    assert is_loopback("127.0.0.1") and is_loopback("::1") and not is_loopback("0.0.0.0")
    with pytest.warns(UserWarning, match="exposed beyond this machine"):
        check_host("0.0.0.0")


# ---------------------------------------------------------------------------------------- clients


def test_llm_user_gets_its_answer_from_the_served_model(served: Served, tmp_path: Any) -> None:
    client = LLMClient(model=NAME, base_url=served.url, cache=False, max_retries=0)
    user = LLMTelepathyUser(client)

    async def ask() -> str:
        try:
            return await user.answer(HIDDEN, QUESTION)
        finally:
            await client.aclose()

    assert asyncio.run(ask()) == "Yes"
    assert client.requests == 1 and client.json_mode  # response_format was accepted


def test_openai_agent_plays_a_function_episode(served: Served) -> None:
    agent = OpenAIAgent(NAME, base_url=served.url)

    async def play() -> Any:
        try:
            return await aplay_episode(FunctionGym(TASK42), agent)
        finally:
            await agent.aclose()

    ep = asyncio.run(play())
    assert ep.policy == f"openai:{NAME}"
    (turn,) = ep.turns
    assert (turn.choice, turn.content, turn.think) == ("answer", "42", THINK)
    assert ep.success and ep.termination == "solved" and ep.score == 1.0


def test_openai_agent_threads_tool_results(served: Served) -> None:
    agent = OpenAIAgent(NAME, base_url=served.url)
    msgs = function_messages()

    async def two_turns() -> tuple[Any, Any, Any]:
        state = agent.start(msgs[0]["content"], msgs[1]["content"], {})
        out1, state1 = await agent.arespond(msgs[1]["content"], state)
        agent.max_tokens = 3  # the second reply's text does not matter here
        out2, state2 = await agent.arespond("Wrong answer, try again.", state1)
        await agent.aclose()
        return out1, state1, state2

    out1, state1, state2 = asyncio.run(two_turns())
    assert parse_action(out1).think == THINK  # reasoning travels as a think block
    assert state1["messages"][:2] == msgs and len(state1["messages"]) == 3
    assistant = state1["messages"][2]
    call_id = assistant["tool_calls"][0]["id"]
    assert assistant["role"] == "assistant" and call_id.startswith("call_")
    assert state2["messages"][3] == {"role": "tool", "tool_call_id": call_id, "content": "Wrong answer, try again."}
    assert len(state2["messages"]) == 5 and state2["turns"] == 2


def test_openai_agent_raises_agent_error(served: Served) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"  # nothing listens once closed
    agent = OpenAIAgent(NAME, base_url=dead, api_key=KEY, max_retries=1, backoff=0.0, timeout=5)
    state = agent.start("sys", "task", {})
    with pytest.raises(AgentError, match=r"failed after 2 attempt\(s\)") as e:
        agent.respond("task", state)
    assert NAME in str(e.value) and dead in str(e.value) and KEY not in str(e.value)
    assert agent.requests == 2

    wrong = OpenAIAgent("no-such-model", base_url=served.url, max_retries=3)
    with pytest.raises(AgentError, match="refused.*HTTP 404"):
        wrong.respond("task", wrong.start("sys", "task", {}))
    assert wrong.requests == 1  # not retried


def test_serve_options_are_checked_before_loading() -> None:
    with pytest.raises(ValueError, match="--max-batch must be >= 1"):
        serve_main(["embedded", "--max-batch", "0"])
    with pytest.raises(ValueError, match="--port must be in 0..65535"):
        serve_main(["embedded", "--port", "70000"])
    with pytest.raises(ValueError, match="--max-body-mb must be a number > 0"):
        serve_main(["embedded", "--max-body-mb", "0"])


def test_generation_failure_is_a_500_that_the_agent_retries(served: Served) -> None:
    class Broken(Engine):
        def generate(self, prompts: Any, params: Any, **kw: Any) -> Any:
            raise RuntimeError("out of memory")

    with BackgroundServer(create_app(Broken(served.engine.model, served.tok), served.template, NAME)) as server:
        r = httpx.post(server.base_url + "/chat/completions", json={"model": NAME, "messages": PLAIN})
        assert r.status_code == 500
        assert r.json()["error"]["type"] == "server_error" and "out of memory" in r.json()["error"]["message"]
        agent = OpenAIAgent(NAME, base_url=server.base_url, max_retries=2, backoff=0.0)
        with pytest.raises(AgentError, match=r"after 3 attempt\(s\); last error: HTTP 500"):
            agent.respond("task", agent.start("sys", "task", {}))
        assert agent.requests == 3 and agent.retries == 2


# ------------------------------------------------------------------------------------------- one client cannot tie it up


def test_oversized_bodies_get_413(served: Served) -> None:
    url = served.url + "/chat/completions"
    r = httpx.post(url, content=b"x" * (5 * 2**20), headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 413, r.text
    err = r.json()["error"]
    assert err["code"] == "request_too_large" and "at most 4,194,304 bytes" in err["message"]
    assert "--max-body-mb" in err["message"]

    engine = Engine(served.engine.model, served.tok)
    with BackgroundServer(create_app(engine, served.template, NAME, max_body_bytes=2000)) as server:
        small = server.base_url + "/chat/completions"
        body = json.dumps({"model": NAME, "messages": PLAIN, "temperature": 0, "max_tokens": 2}).encode()
        assert httpx.post(small, content=body, headers={"Content-Type": "application/json"}).status_code == 200
        r = httpx.post(small, content=b" " * 2001, headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and "is 2,001 bytes; this server accepts at most 2,000" in r.text
        # no Content-Length (chunked): counted as it arrives
        r = httpx.post(small, content=iter([b" " * 1500, b" " * 1500]), headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
        assert httpx.get(server.base_url.removesuffix("/v1") + "/health").status_code == 200


class SlowTokenizer:
    """The served tokenizer, but encoding takes `delay` seconds (a huge prompt's tokenisation)."""

    def __init__(self, tok: Any, delay: float) -> None:
        self._tok, self.delay = tok, delay

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tok, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        time.sleep(self.delay)
        return self._tok(*args, **kwargs)


def test_tokenisation_does_not_block_the_event_loop(served: Served) -> None:
    """Once a 20 MB body was tokenised on the event loop and /health waited 16.8 s."""
    import threading

    engine = Engine(served.engine.model, SlowTokenizer(served.tok, 2.0))
    with BackgroundServer(create_app(engine, served.template, NAME)) as server:
        result: dict[str, Any] = {}
        body = {"model": NAME, "messages": PLAIN, "temperature": 0}
        t = threading.Thread(target=lambda: result.update(r=httpx.post(server.base_url + "/chat/completions",
                                                                       json=body, timeout=60)))
        t.start()
        time.sleep(0.4)  # the request is being tokenised now
        start = time.monotonic()
        health = httpx.get(server.base_url.removesuffix("/v1") + "/health", timeout=30)
        waited = time.monotonic() - start
        t.join()
    assert health.status_code == 200 and waited < 0.8, waited
    assert result["r"].status_code == 200 and result["r"].json()["choices"][0]["message"]["content"] == PLAIN_REPLY


def test_generate_stops_abandoned_rows(served: Served) -> None:
    import threading

    from baorl.serve.engine import GenParams

    ids = served.tokens(render_prompt(served.tok, served.template, [{"role": "user", "content": "Write anything."}]))
    p = GenParams(max_tokens=24, temperature=0)
    (alone,) = served.engine.generate([ids], [p])
    gone, kept = threading.Event(), threading.Event()
    gone.set()
    cut, full = served.engine.generate([ids, ids], [p, p], abandoned=[gone, kept])
    assert full.text == alone.text and full.completion_tokens == alone.completion_tokens
    assert cut.completion_tokens <= 2 < alone.completion_tokens


class SlowEngine(Engine):
    """Generation at 10 ms a token that honours abandoned rows, to time what a client waits for."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[int, int]] = []  # (rows, steps run)

    def generate(self, prompts: Any, params: Any, *, abandoned: Any = None) -> Any:
        from baorl.serve.engine import Generation

        steps = 0
        for steps in range(max(p.max_tokens for p in params)):  # noqa: B007
            if abandoned is not None and all(f.is_set() for f in abandoned):
                break
            time.sleep(0.01)
        else:
            steps += 1
        self.calls.append((len(prompts), steps))
        return [Generation("x" * min(steps, p.max_tokens), min(steps, p.max_tokens), "length") for p in params]


def test_requests_of_clients_that_left_are_dropped(served: Served) -> None:
    """Once a 2-token request waited 37 s behind 16 abandoned ones that still generated."""
    engine = SlowEngine(served.engine.model, served.tok, max_batch=1, batch_wait=0)
    with BackgroundServer(create_app(engine, served.template, NAME)) as server:
        body = json.dumps({"model": NAME, "messages": PLAIN, "temperature": 0, "max_tokens": 500}).encode()
        head = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        socks = []
        for _ in range(8):  # 8 requests of 5 s each, one at a time
            s = socket.create_connection(("127.0.0.1", server.port))
            s.sendall(head + body)
            socks.append(s)
        deadline = time.monotonic() + 30
        while engine.pending < 8 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert engine.pending == 8
        for s in socks:  # every client gives up
            s.close()
        start = time.monotonic()
        r = httpx.post(server.base_url + "/chat/completions", timeout=30,
                       json={"model": NAME, "messages": PLAIN, "temperature": 0, "max_tokens": 2})
        waited = time.monotonic() - start
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 2
    assert waited < 3.0, waited
    assert engine.abandoned == 8
    # the one generating stopped within a poll of its client leaving, and so did any queued one that started
    # before its own client's departure was seen; the others never ran; then the 2-token request ran
    *dropped, last = engine.calls
    assert last == (1, 2) and 1 <= len(dropped) <= 8
    assert sum(steps for _, steps in dropped) < 100, dropped  # under 1 s of generation in all, not 8 x 5 s
