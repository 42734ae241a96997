"""LLMClient against a real local HTTP server that speaks the chat-completions protocol.

`FakeOpenAI` (also used by test_llm_users.py) answers POST /v1/chat/completions from a script of
scripted replies, then from a handler; it records every request body and the most requests it had
in flight at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import pickle
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from baorl.users.base import SimulatorError
from baorl.users.client import LLMClient
from baorl.users.jsonfix import parse_json_reply

KEY = "sk-test-SECRET-0123456789abcdef"
MESSAGES = [{"role": "user", "content": "Is it a fruit?"}]


@dataclass
class Reply:
    """One scripted reply: `content` as the assistant's text, or an HTTP error `status`."""

    content: str = '{"answer": "Yes"}'
    status: int = 200
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    error: str = "scripted failure"


class FakeOpenAI:
    """A threaded stdlib HTTP server with an OpenAI-shaped chat-completions endpoint."""

    def __init__(self) -> None:
        self.script: list[Reply] = []
        self.handler: Callable[[dict[str, Any]], Reply | str] = lambda body: Reply()
        self.bodies: list[dict[str, Any]] = []
        self.auth: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (stdlib name)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with fake._lock:
                    fake.bodies.append(body)
                    fake.auth.append(self.headers.get("Authorization", ""))
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                    reply = fake.script.pop(0) if fake.script else None
                try:
                    if self.path != "/v1/chat/completions":
                        reply = Reply(status=404, error=f"no route {self.path}")
                    elif reply is None:
                        reply = fake.handler(body)
                    if isinstance(reply, str):
                        reply = Reply(content=reply)
                    time.sleep(reply.delay)
                    self._send(reply, body)
                finally:
                    with fake._lock:
                        fake.in_flight -= 1

            def _send(self, reply: Reply, body: dict[str, Any]) -> None:
                if reply.status == 200:
                    payload = {
                        "id": "chatcmpl-fake",
                        "object": "chat.completion",
                        "created": 0,
                        "model": body.get("model", "?"),
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": reply.content},
                                "finish_reason": "stop",
                            }
                        ],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    }
                else:
                    payload = {"error": {"message": reply.error, "type": "fake_error", "code": None}}
                data = json.dumps(payload).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    @property
    def count(self) -> int:
        return len(self.bodies)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI()
    yield server
    server.close()


def make_client(fake: FakeOpenAI, tmp_path, **kw: Any) -> LLMClient:
    opts: dict[str, Any] = {"api_key": KEY, "cache_dir": tmp_path / "cache", "backoff": 0.01, "timeout": 5.0}
    opts.update(kw)
    return LLMClient("fake-model", fake.base_url, **opts)


def ask(client: LLMClient, messages=MESSAGES, validate=None):
    return asyncio.run(client.chat_json(messages, validate))


# ------------------------------------------------------------------------------------------ success


def test_success_sends_openai_request(fake, tmp_path):
    client = make_client(fake, tmp_path)
    assert ask(client) == {"answer": "Yes"}
    (body,) = fake.bodies
    assert body["model"] == "fake-model"
    assert body["messages"] == MESSAGES
    assert body["temperature"] == 0.0
    assert body["response_format"] == {"type": "json_object"}
    assert fake.auth == [f"Bearer {KEY}"]
    assert client.stats() == {"requests": 1, "cache_hits": 0, "retries": 0, "coalesced": 0}


@pytest.mark.parametrize(
    "content",
    [
        '```json\n{"answer": "No"}\n```',
        "{'answer': 'No',}",
        'Here you go: {"answer": "No"} -- done',
        '<think>The user asks {"answer": "Yes"}?</think>\n{"answer": "No"}',
    ],
)
def test_messy_json_is_parsed(fake, tmp_path, content):
    fake.script = [Reply(content=content)]
    assert ask(make_client(fake, tmp_path)) == {"answer": "No"}
    assert fake.count == 1


# ------------------------------------------------------------------------------------------ retries


def test_500_then_success_retries(fake, tmp_path):
    fake.script = [Reply(status=500), Reply(status=503), Reply(content='{"answer": "Maybe"}')]
    client = make_client(fake, tmp_path)
    assert ask(client) == {"answer": "Maybe"}
    assert fake.count == 3
    assert client.retries == 2 and client.requests == 3


def test_429_is_retried_and_retry_after_honoured(fake, tmp_path):
    fake.script = [Reply(status=429, headers={"Retry-After": "0.3"}, error="rate limited")]
    client = make_client(fake, tmp_path)
    start = time.monotonic()
    assert ask(client) == {"answer": "Yes"}
    assert time.monotonic() - start >= 0.3
    assert fake.count == 2 and client.retries == 1


def test_garbage_then_good(fake, tmp_path):
    fake.script = [Reply(content="I'd say yes!"), Reply(content="")]
    client = make_client(fake, tmp_path)
    assert ask(client) == {"answer": "Yes"}
    assert fake.count == 3 and client.retries == 2


def test_timeout_is_retried(fake, tmp_path):
    fake.script = [Reply(delay=1.0)]
    client = make_client(fake, tmp_path, timeout=0.3)
    assert ask(client) == {"answer": "Yes"}
    assert fake.count == 2 and client.retries == 1


def test_always_garbage_raises_after_retries(fake, tmp_path):
    fake.handler = lambda body: Reply(content="no json here")
    client = make_client(fake, tmp_path, max_retries=3)
    with pytest.raises(SimulatorError) as info:
        ask(client)
    msg = str(info.value)
    assert "fake-model" in msg and fake.base_url in msg and "no json here" in msg
    assert "4 attempt" in msg
    assert fake.count == 4 and client.retries == 3
    assert not list((tmp_path / "cache").rglob("*.json")), "garbage must not be cached"


def test_validator_rejection_is_retried_and_not_cached(fake, tmp_path):
    fake.script = [Reply(content='{"answer": "Perhaps"}')]

    def validate(obj):
        if obj.get("answer") not in ("Yes", "No", "Maybe"):
            raise ValueError(f"bad answer {obj.get('answer')!r}")
        return obj["answer"]

    client = make_client(fake, tmp_path)
    assert ask(client, validate=validate) == "Yes"
    assert fake.count == 2
    (entry,) = (tmp_path / "cache").rglob("*.json")
    assert json.loads(entry.read_text())["reply"] == {"answer": "Yes"}


def test_connection_refused_raises_without_key(tmp_path, caplog):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed when the block ends: nothing listens there
    client = LLMClient(
        "model-x", f"http://127.0.0.1:{port}/v1", KEY, cache_dir=tmp_path, backoff=0.01, max_retries=2
    )
    caplog.set_level(logging.DEBUG)
    with pytest.raises(SimulatorError) as info:
        ask(client)
    msg = str(info.value)
    assert "model-x" in msg and f"127.0.0.1:{port}" in msg and "connection" in msg.lower()
    assert "All connection attempts failed" in msg
    assert client.requests == 3
    assert KEY not in msg and KEY not in repr(info.value) and KEY not in caplog.text
    assert info.value.__cause__ is None and info.value.__context__ is None


# ------------------------------------------------------------------------------------------ refusals


def test_401_fails_at_once_and_scrubs_the_key(fake, tmp_path, caplog):
    fake.handler = lambda body: Reply(status=401, error=f"Incorrect API key provided: {KEY}.")
    client = make_client(fake, tmp_path)
    caplog.set_level(logging.DEBUG)
    with pytest.raises(SimulatorError) as info:
        ask(client)
    msg = str(info.value)
    assert "401" in msg and "fake-model" in msg
    assert KEY not in msg and KEY[:12] not in msg
    assert KEY not in repr(client) and KEY not in caplog.text
    assert fake.count == 1 and client.retries == 0


def test_404_fails_at_once(fake, tmp_path):
    client = LLMClient(
        "m", fake.base_url.removesuffix("/v1") + "/nope", KEY, cache_dir=tmp_path, backoff=0.01
    )
    with pytest.raises(SimulatorError, match="404"):
        ask(client)
    assert fake.count == 1


def test_response_format_rejection_falls_back_once_and_remembers(fake, tmp_path):
    def handler(body):
        if "response_format" in body:
            return Reply(status=400, error="unsupported parameter: response_format")
        return Reply(content='{"answer": "No"}')

    fake.handler = handler
    client = make_client(fake, tmp_path)
    assert ask(client) == {"answer": "No"}
    assert ask(client, [{"role": "user", "content": "Is it red?"}]) == {"answer": "No"}
    assert ["response_format" in b for b in fake.bodies] == [True, False, False]
    assert client.json_mode is False and client.retries == 0 and client.requests == 3


def test_other_400_fails_at_once(fake, tmp_path):
    fake.handler = lambda body: Reply(status=400, error="messages must not be empty")
    client = make_client(fake, tmp_path)
    with pytest.raises(SimulatorError, match="400"):
        ask(client)
    assert fake.count == 1 and client.json_mode is True


# ------------------------------------------------------------------------------------------ cache


def test_cache_hits_and_persists_across_clients(fake, tmp_path):
    first = make_client(fake, tmp_path)
    assert ask(first) == {"answer": "Yes"}
    assert ask(first) == {"answer": "Yes"}
    assert fake.count == 1 and first.cache_hits == 1

    second = make_client(fake, tmp_path)
    fake.handler = lambda body: Reply(content='{"answer": "No"}')
    assert ask(second) == {"answer": "Yes"}
    assert fake.count == 1 and second.cache_hits == 1 and second.requests == 0

    # another message, model or temperature is another key
    assert ask(second, [{"role": "user", "content": "Is it blue?"}]) == {"answer": "No"}
    assert ask(make_client(fake, tmp_path, temperature=0.7)) == {"answer": "No"}
    assert fake.count == 3


def test_cache_entry_failing_new_validator_is_refetched(fake, tmp_path):
    client = make_client(fake, tmp_path)
    ask(client)
    fake.handler = lambda body: Reply(content='{"answer": "Yes", "why": "round"}')

    def needs_why(obj):
        if "why" not in obj:
            raise ValueError("missing why")
        return obj["why"]

    assert ask(client, validate=needs_why) == "round"
    assert fake.count == 2 and client.cache_hits == 0
    assert ask(client, validate=needs_why) == "round" and client.cache_hits == 1


def test_cache_off_and_env_defaults(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", fake.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env-key-987654")
    monkeypatch.setenv("BAORL_CACHE_DIR", str(tmp_path / "envcache"))
    client = LLMClient("env-model", backoff=0.01)
    assert client.cache_dir == tmp_path / "envcache"
    ask(client)
    ask(client)
    assert fake.auth == ["Bearer sk-env-key-987654"] and client.cache_hits == 1
    assert list((tmp_path / "envcache").rglob("*.json"))

    nocache = LLMClient("env-model", cache=False, backoff=0.01)
    ask(nocache)
    ask(nocache)
    assert fake.count == 3 and nocache.cache_hits == 0


def test_missing_key_sends_placeholder(fake, tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    client = LLMClient("local", fake.base_url, cache_dir=tmp_path, backoff=0.01)
    ask(client)
    assert fake.auth == ["Bearer EMPTY"]


def test_concurrent_writers_of_one_key(fake, tmp_path):
    clients = [make_client(fake, tmp_path) for _ in range(4)]

    async def main():
        return await asyncio.gather(*(c.chat_json(MESSAGES) for c in clients))

    assert asyncio.run(main()) == [{"answer": "Yes"}] * 4
    files = list((tmp_path / "cache").rglob("*"))
    assert [f.suffix for f in files if f.is_file()] == [".json"], "no temp files left behind"


# ------------------------------------------------------------------------------------------ concurrency


def test_concurrency_limit_respected(fake, tmp_path):
    fake.handler = lambda body: Reply(delay=0.15)
    client = make_client(fake, tmp_path, concurrency=2)

    async def main():
        msgs = [[{"role": "user", "content": f"question {i}"}] for i in range(6)]
        return await asyncio.gather(*(client.chat_json(m) for m in msgs))

    assert len(asyncio.run(main())) == 6
    assert fake.count == 6
    assert fake.max_in_flight == 2


def test_pickled_client_still_works(fake, tmp_path):
    client = make_client(fake, tmp_path, cache=False)
    ask(client)
    copy = pickle.loads(pickle.dumps(client))
    assert ask(copy) == {"answer": "Yes"}
    assert fake.auth == [f"Bearer {KEY}"] * 2


def test_identical_calls_in_flight_share_one_request(fake, tmp_path):
    fake.handler = lambda body: Reply(delay=0.1)
    client = make_client(fake, tmp_path, cache=False)

    async def main(messages):
        return await asyncio.gather(*(client.chat_json(messages) for _ in range(5)))

    assert asyncio.run(main(MESSAGES)) == [{"answer": "Yes"}] * 5
    assert fake.count == 1 and client.coalesced == 4

    # a failure is shared too: one request (plus its retries), and every caller gets the error
    fake.handler = lambda body: Reply(status=500)
    client.max_retries = 1

    async def failing():
        return await asyncio.gather(*(client.chat_json(MESSAGES) for _ in range(3)), return_exceptions=True)

    errors = asyncio.run(failing())
    assert all(isinstance(e, SimulatorError) and "500" in str(e) for e in errors)
    assert fake.count == 1 + 2


def test_works_across_event_loops(fake, tmp_path):
    """Gym.step runs each step in its own asyncio.run; the client must survive that."""
    client = make_client(fake, tmp_path)
    for i in range(3):
        assert ask(client, [{"role": "user", "content": f"q{i}"}]) == {"answer": "Yes"}
    assert fake.count == 3


# ------------------------------------------------------------------------------------------ identity


def test_repr_label_and_arguments(tmp_path):
    client = LLMClient("gpt-4o", "https://user:pw@example.com/v1", KEY, cache_dir=tmp_path)
    assert client.label == "gpt-4o"
    assert client.host == "example.com"
    assert KEY not in repr(client) and KEY not in str(client)
    assert client.base_url == "https://example.com/v1" and "pw" not in repr(client)
    for bad in ({"max_retries": -1}, {"concurrency": 0}, {"timeout": 0}, {"backoff": -1.0}):
        with pytest.raises(ValueError):
            LLMClient("m", **bad)
    with pytest.raises(ValueError, match="model"):
        LLMClient(" ")


def test_parse_json_reply_extra_cases():
    assert parse_json_reply('{"a": {"b": [1, {"c": "}"}]}}') == {"a": {"b": [1, {"c": "}"}]}}
    assert parse_json_reply("It's here: {'reply': \"I'd like a PDF\", 'covered': [1]}") == {
        "reply": "I'd like a PDF",
        "covered": [1],
    }
    assert parse_json_reply('{"x": "caf\\u00e9", "y": -1.5e2}') == {"x": "café", "y": -150.0}
    # a broken first object, a good second one
    assert parse_json_reply('{"a": } and then {"b": 2}') == {"b": 2}
    for bad in ("", "{", "{'a': 1", "[1]", "null", "{'a': 'it's'}"):
        with pytest.raises(ValueError):
            parse_json_reply(bad)
