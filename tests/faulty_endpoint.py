"""A faulty OpenAI-compatible chat-completions endpoint for the fault-injection suite (test_faults.py).

`FaultyEndpoint` serves ``POST /v1/chat/completions`` on 127.0.0.1 from a daemon thread. What it
answers depends on the request's model name, or on ``endpoint.modes[model]`` when set (so a test can
break a model and heal it again):

==================  ======================================================================================
``ok``              a valid reply (simulator: a JSON verdict; agent: a tool call, then ``[finish]``)
``garbage``         HTTP 200 whose body is not JSON at all
``500``             HTTP 500
``hang``            no answer for `hang_s` seconds (longer than the client's timeout), then a valid one
``surrogate``       lone surrogates (``\\ud800``) in the reply and in the tool call's arguments
``deep``            a reply / tool call nested 5,000 levels deep
``u2028``           U+2028, U+2029 and U+0085 in the reply and in the tool call's content and reasoning
==================  ======================================================================================

A request is an agent's when it offers tools (the agent asks for ``interact_with_env``), else a
simulator's. Simulator verdicts are deterministic: "Yes" or "No" from a hash of the question, and
every guess is wrong, so a scripted agent's episodes are reproducible run to run.

The server is bounded: it answers at most `max_requests` requests (then 503) and shuts itself down
after `lifetime` seconds, so a test that forgets it cannot leave it running.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEEP = 5000
LINE_BREAKS = "\u2028\u2029\x85"


class FaultyEndpoint:
    def __init__(self, *, lifetime: float = 300.0, max_requests: int = 20_000, hang_s: float = 1.0) -> None:
        self.modes: dict[str, str] = {}
        self.hang_s = hang_s
        self.max_requests = max_requests
        self.requests = 0
        self.by_mode: dict[str, int] = {}
        self._lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (stdlib name)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with endpoint._lock:
                    endpoint.requests += 1
                    over = endpoint.requests > endpoint.max_requests
                    model = str(body.get("model", ""))
                    mode = endpoint.modes.get(model, model.removeprefix("agent-").removeprefix("sim-"))
                    endpoint.by_mode[mode] = endpoint.by_mode.get(mode, 0) + 1
                if over:
                    return self._send(503, {"error": {"message": "request budget spent"}})
                if self.path != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                agent = bool(body.get("tools"))
                if mode == "500":
                    return self._send(500, {"error": {"message": "injected server error"}})
                if mode == "garbage":
                    return self._send_raw(200, b"\x00garbage: <html>not json{{{")
                if mode == "hang":
                    time.sleep(endpoint.hang_s)
                message = endpoint.agent_message(body, mode) if agent else endpoint.simulator_message(body, mode)
                self._send(200, {
                    "id": "chatcmpl-faulty", "object": "chat.completion", "created": 0, "model": model,
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                })

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                # ensure_ascii: a lone surrogate goes out as the escape "\ud800", as a real server sends it
                self._send_raw(status, json.dumps(payload).encode("ascii"))

            def _send_raw(self, status: int, data: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()
        self._timer = threading.Timer(lifetime, self.close)
        self._timer.daemon = True
        self._timer.start()
        self._closed = False

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._timer.cancel()
        self.server.shutdown()
        self.server.server_close()

    # ---- replies ---------------------------------------------------------------------------------
    @staticmethod
    def simulator_message(body: dict[str, Any], mode: str) -> dict[str, Any]:
        messages = body.get("messages") or [{}]
        system, question = str(messages[0].get("content", "")), str(messages[-1].get("content", ""))
        if '"correct"' in system:  # Telepathy's judge: every guess is wrong
            verdict: dict[str, Any] = {"reason": "judged", "correct": False}
        else:
            even = hashlib.sha256(question.encode("utf-8", "replace")).digest()[0] % 2 == 0
            verdict = {"reason": "answered", "answer": "Yes" if even else "No"}
        content = json.dumps(verdict)
        if mode == "surrogate":  # a raw lone surrogate, and one escaped inside the JSON text
            content = json.dumps({**verdict, "reason": "odd \ud800"}, ensure_ascii=False)[:-1] + ', "x": "\\udc00"}'
        elif mode == "deep":
            content = '{"answer": ' + "[" * DEEP + "]" * DEEP + "}"
        elif mode == "u2028":
            content = json.dumps({**verdict, "reason": f"line{LINE_BREAKS}breaks"}, ensure_ascii=False)
        return {"role": "assistant", "content": content}

    @staticmethod
    def agent_message(body: dict[str, Any], mode: str) -> dict[str, Any]:
        """Turn 1: one tool call (search 'test'), shaped by `mode`; turn 2: '[finish]' as text."""
        turn = sum(m.get("role") == "assistant" for m in body.get("messages", []))
        if turn >= 1:
            return {"role": "assistant", "content": "[finish]"}
        args = json.dumps({"choice": "search", "content": "test"})
        message: dict[str, Any] = {"role": "assistant", "content": None}
        if mode == "surrogate":
            args = '{"choice": "search", "content": "test \\ud800"}'
            message["content"] = "thinking \ud800"
        elif mode == "deep":
            args = '{"choice": "search", "content": ' + "[" * DEEP + "]" * DEEP + "}"
        elif mode == "u2028":
            args = json.dumps({"choice": "search", "content": f"te{LINE_BREAKS}st"}, ensure_ascii=False)
            message["reasoning_content"] = f"plan{LINE_BREAKS}ahead"
        message["tool_calls"] = [{"id": "call_0", "type": "function",
                                  "function": {"name": "interact_with_env", "arguments": args}}]
        return message
