"""An OpenAI-compatible chat-completions server for one local model (`baorl serve`).

Endpoints: ``POST /v1/chat/completions``, ``GET /v1/models`` (and ``/v1/models/{id}``),
``GET /health``. Requests and replies follow OpenAI's schema; what this server does with each
request field:

- ``messages``: ``system`` (``developer`` counts as system), ``user``, ``assistant`` (with
  ``tool_calls`` and optional ``reasoning_content``) and ``tool`` turns; content is a string or a
  list of text parts. Rendered with the server's chat template (``--chat-template``).
- ``tools`` with ``tool_choice`` ``auto`` (default) or ``none`` (the tools are then left out of the
  prompt). Hermes ``<tool_call>{json}</tool_call>`` blocks in the generation come back as
  ``tool_calls`` (finish reason ``tool_calls``); generation stops after the first one, so a reply
  holds at most one call. ``required`` or a named function: 400.
- ``<think>...</think>`` in the generation comes back as ``reasoning_content``, not in ``content``.
- ``temperature`` (default 1.0 as in OpenAI's API; 0 is greedy), ``top_p``, ``max_tokens`` /
  ``max_completion_tokens`` (default ``default_max_tokens``, clipped to the model's context),
  ``stop`` (up to 4 strings, removed from the reply), ``seed`` (sampling only; a seeded request
  runs alone, so it is reproducible).
- ``response_format``: ``text``; ``json_object`` and ``json_schema`` are best effort: a system
  hint asks for one JSON object (there is no constrained decoding).
- ``n`` other than 1, ``logprobs``: 400. ``stream``: served as server-sent events, but the whole
  reply arrives in one chunk once generation ends (no token-by-token streaming).
- ``chat_template_kwargs`` (vLLM's extension): extra template variables, e.g.
  ``{"enable_thinking": false}`` with the ``qwen3`` template. Other fields are ignored.

Errors use OpenAI's body, ``{"error": {"message", "type", "param", "code"}}``: 400 for a malformed
request (any body that does not parse, however deeply nested), 401 for a missing or wrong key
(only with ``api_key``; otherwise an ``Authorization`` header is accepted and ignored), 404 for an
unknown model, 413 for a body over ``max_body_bytes`` (default 4 MiB), 500 if generation fails.
Request bodies are never logged.

One client cannot tie the server up: bodies are capped, parsing, template rendering and
tokenisation run on worker threads (never on the event loop, so ``/health`` and other requests
stay responsive), and a request whose client disconnects is dropped from the generation queue, or
stopped at its next token if its batch is already generating.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from baorl.serve.engine import Engine, Generation, GenParams, parse_reply, render_prompt

log = logging.getLogger(__name__)

#: default for requests that give no max_tokens (CPU generation is slow; raise it on a GPU)
DEFAULT_MAX_TOKENS = 1024
#: largest request body accepted (413 above it); a long chat with tool schemas is well under 1 MiB
DEFAULT_MAX_BODY_BYTES = 4 * 2**20
#: how often a waiting request checks whether its client is still connected, in seconds
DISCONNECT_POLL_S = 0.1
#: an oversized body is read and discarded up to this size so that the client gets its 413 (beyond it,
#: the connection is closed while the client may still be sending)
_DRAIN_LIMIT = 64 * 2**20
_ROLES = {"system", "user", "assistant", "tool"}


class APIError(Exception):
    """An error reply in OpenAI's format."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status)


class ChatRequest(BaseModel):
    """The chat-completions fields this server reads (others are ignored)."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1)
    messages: list[dict[str, Any]] = Field(min_length=1)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int | None = None
    stream: bool | None = None
    stream_options: dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    logprobs: bool | None = None
    chat_template_kwargs: dict[str, Any] | None = None


# ---------------------------------------------------------------------------------------- validation


def _text(content: Any, where: str) -> str | None:
    """A message content as text: a string, None, or a list of ``{"type": "text"}`` parts."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise APIError(400, f"{where}: only text content parts are supported", param=where)
            parts.append(part["text"])
        return "".join(parts)
    raise APIError(400, f"{where} must be a string or a list of text parts", param=where)


def _tool_calls(raw: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        raise APIError(400, f"{where} must be a list", param=where)
    calls = []
    for k, call in enumerate(raw):
        fn = call.get("function") if isinstance(call, dict) else None
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise APIError(400, f"{where}[{k}] must be {{'type': 'function', 'function': {{'name', 'arguments'}}}}",
                           param=f"{where}[{k}]")
        args = fn.get("arguments", "{}")
        calls.append({
            "id": str(call.get("id") or f"call_{k}"), "type": "function",
            "function": {"name": fn["name"], "arguments": args if isinstance(args, str) else json.dumps(args)},
        })
    return calls


def normalize_messages(raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Validate chat messages and keep what the templates read.

    >>> normalize_messages([{"role": "developer", "content": [{"type": "text", "text": "Be brief."}]},
    ...                     {"role": "user", "content": "hi", "name": "ann"}])
    [{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'hi'}]
    """
    out = []
    for i, m in enumerate(raw):
        where = f"messages[{i}]"
        role = m.get("role")
        role = "system" if role == "developer" else role
        if role not in _ROLES:
            raise APIError(400, f"{where}.role must be one of system, user, assistant, tool; got {role!r}",
                           param=f"{where}.role")
        content = _text(m.get("content"), f"{where}.content")
        msg: dict[str, Any] = {"role": role, "content": content}
        if role == "assistant":
            msg["content"] = content or ""
            if m.get("tool_calls"):
                msg["tool_calls"] = _tool_calls(m["tool_calls"], f"{where}.tool_calls")
            if isinstance(m.get("reasoning_content"), str):
                msg["reasoning_content"] = m["reasoning_content"]
        elif content is None:
            raise APIError(400, f"{where}.content is required for a {role} message", param=f"{where}.content")
        if role == "tool" and isinstance(m.get("tool_call_id"), str):
            msg["tool_call_id"] = m["tool_call_id"]
        out.append(msg)
    return out


def _tools(req: ChatRequest) -> list[dict[str, Any]] | None:
    choice = req.tool_choice if req.tool_choice is not None else "auto"
    if choice not in ("auto", "none"):
        raise APIError(400, "tool_choice must be 'auto' or 'none': this server cannot force a tool call",
                       param="tool_choice")
    if not req.tools or choice == "none":
        return None
    for k, tool in enumerate(req.tools):
        fn = tool.get("function")
        if tool.get("type", "function") != "function" or not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise APIError(400, f"tools[{k}] must be {{'type': 'function', 'function': {{'name', ...}}}}",
                           param=f"tools[{k}]")
    return req.tools


def _json_mode(req: ChatRequest) -> bool:
    kind = (req.response_format or {}).get("type", "text")
    if kind not in ("text", "json_object", "json_schema"):
        raise APIError(400, f"response_format.type must be text, json_object or json_schema; got {kind!r}",
                       param="response_format")
    return kind != "text"


def _stops(req: ChatRequest) -> tuple[str, ...]:
    stops = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
    if len(stops) > 4:
        raise APIError(400, "stop takes at most 4 strings", param="stop")
    return tuple(s for s in stops if s)


def _validation_message(e: ValidationError) -> tuple[str, str | None]:
    first = e.errors()[0]
    param = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or None
    return f"{param + ': ' if param else ''}{first.get('msg', 'invalid value')}", param


# ---------------------------------------------------------------------------------------- the app


def create_app(
    engine: Engine,
    template: str,
    model_name: str,
    *,
    api_key: str | None = None,
    default_max_tokens: int = DEFAULT_MAX_TOKENS,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    prepare_workers: int = 4,
    disconnect_poll_s: float = DISCONNECT_POLL_S,
) -> FastAPI:
    """The FastAPI app serving `engine` under the model id `model_name`.

    Args:
        engine: the model and its generation worker (started and stopped with the app).
        template: the Jinja chat template (`baorl.models.chat_template`).
        model_name: the id clients must send as ``model``.
        api_key: if set, ``/v1/*`` requires ``Authorization: Bearer <api_key>``.
        default_max_tokens: ``max_tokens`` for requests that give none.
        max_body_bytes: largest request body accepted; a larger one gets 413.
        prepare_workers: threads that parse, render and tokenise requests (off the event loop).
        disconnect_poll_s: how often a request waiting for its generation checks that its client
            is still there; one that is gone is dropped (`Engine.abandon`).
    """
    if int(max_body_bytes) != max_body_bytes or max_body_bytes < 1:
        raise ValueError(f"max_body_bytes must be an integer >= 1, got {max_body_bytes!r}")
    if int(prepare_workers) != prepare_workers or prepare_workers < 1:
        raise ValueError(f"prepare_workers must be an integer >= 1, got {prepare_workers!r}")
    if not disconnect_poll_s > 0:
        raise ValueError(f"disconnect_poll_s must be > 0, got {disconnect_poll_s!r}")
    pool: ThreadPoolExecutor | None = None

    def workers() -> ThreadPoolExecutor:
        nonlocal pool
        if pool is None:
            pool = ThreadPoolExecutor(max_workers=int(prepare_workers), thread_name_prefix="baorl-serve-prepare")
        return pool

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        nonlocal pool
        engine.start()
        try:
            yield
        finally:
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)
                pool = None
            await asyncio.to_thread(engine.close)

    app = FastAPI(title="baorl serve", lifespan=lifespan, docs_url=None, redoc_url=None)
    created = int(time.time())
    tokenizer = engine.tokenizer

    @app.exception_handler(APIError)
    async def _api_error(request: Request, e: APIError) -> JSONResponse:
        return e.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        return APIError(400, f"invalid request: {e.errors()[0].get('msg', '')}").response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException) -> JSONResponse:
        code = "not_found" if e.status_code == 404 else None
        return APIError(e.status_code, f"{request.method} {request.url.path}: {e.detail}", code=code).response()

    @app.exception_handler(Exception)
    async def _crash(request: Request, e: Exception) -> JSONResponse:
        log.error("%s %s failed: %s", request.method, request.url.path, type(e).__name__, exc_info=e)
        return APIError(500, f"internal server error ({type(e).__name__})", kind="server_error").response()

    def authorize(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("authorization", "")
        token = given[7:].strip() if given[:7].lower() == "bearer " else ""
        if not hmac.compare_digest(token.encode(), api_key.encode()):
            raise APIError(401, "missing or invalid API key (send 'Authorization: Bearer <key>')",
                           code="invalid_api_key")

    def model_card() -> dict[str, Any]:
        return {"id": model_name, "object": "model", "created": created, "owned_by": "baorl"}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok", "model": model_name}

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        authorize(request)
        return {"object": "list", "data": [model_card()]}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str, request: Request) -> dict[str, Any]:
        authorize(request)
        if model_id != model_name:
            raise APIError(404, f"model {model_id!r} is not served here; this server serves {model_name!r}",
                           param="model", code="model_not_found")
        return model_card()

    def too_large(size: int | None) -> APIError:
        got = f"is {size:,} bytes" if size is not None else "is larger than that"
        return APIError(413, f"the request body {got}; this server accepts at most {max_body_bytes:,} bytes "
                        "(baorl serve --max-body-mb)", code="request_too_large")

    async def read_body(request: Request) -> bytes:
        """The body, or 413 once it passes `max_body_bytes` (read and discarded up to `_DRAIN_LIMIT`)."""
        declared = request.headers.get("content-length")
        size: int | None = None
        if declared is not None:
            try:
                size = int(declared)
            except ValueError:
                raise APIError(400, f"invalid Content-Length header {declared[:40]!r}") from None
            if size > _DRAIN_LIMIT:
                raise too_large(size)  # not worth reading: the connection closes under the client
        chunks: list[bytes] = []
        got = 0
        async for chunk in request.stream():
            got += len(chunk)
            if got > max_body_bytes or (size is not None and size > max_body_bytes):
                chunks.clear()  # over the cap: keep nothing, read on only so that the client hears the 413
                if got > _DRAIN_LIMIT:
                    break
                continue
            chunks.append(chunk)
        if got > max_body_bytes or (size is not None and size > max_body_bytes):
            raise too_large(size)
        return b"".join(chunks)

    def prepare(raw: bytes) -> tuple[ChatRequest, list[dict[str, Any]] | None, list[int], GenParams]:
        """Parse, validate, render and tokenise one request (on a worker thread: all of it is CPU work)."""
        try:
            return _prepare(raw)
        except RecursionError:
            raise APIError(400, "the request body is nested too deeply to process") from None

    def _prepare(raw: bytes) -> tuple[ChatRequest, list[dict[str, Any]] | None, list[int], GenParams]:
        try:
            body = json.loads(raw)
        except RecursionError:
            raise APIError(400, "the request body is not valid JSON: it is nested too deeply") from None
        except ValueError:  # JSONDecodeError, UnicodeDecodeError
            raise APIError(400, "the request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise APIError(400, "the request body must be a JSON object")
        try:
            req = ChatRequest.model_validate(body)
        except ValidationError as e:
            message, param = _validation_message(e)
            raise APIError(400, message, param=param) from None
        if req.model != model_name:
            raise APIError(404, f"model {req.model!r} is not served here; this server serves {model_name!r}",
                           param="model", code="model_not_found")
        if req.n not in (None, 1):
            raise APIError(400, "n must be 1: this server returns one choice per request (send n requests)",
                           param="n")
        if req.logprobs:
            raise APIError(400, "logprobs are not supported by this server", param="logprobs")
        messages = normalize_messages(req.messages)
        tools = _tools(req)
        try:
            prompt = render_prompt(tokenizer, template, messages, tools, json_mode=_json_mode(req),
                                   template_kwargs=req.chat_template_kwargs)
        except APIError:
            raise
        except Exception as e:  # noqa: BLE001 (a template error is the request's fault)
            raise APIError(400, f"cannot render the messages with the chat template: {e}", param="messages") from None
        prompt_ids = list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        max_tokens = req.max_completion_tokens or req.max_tokens or default_max_tokens
        if engine.context_length is not None:
            room = engine.context_length - len(prompt_ids)
            if room < 1:
                raise APIError(400, f"the prompt is {len(prompt_ids)} tokens; the model's context is "
                               f"{engine.context_length}", param="messages", code="context_length_exceeded")
            max_tokens = min(max_tokens, room)
        temperature = 1.0 if req.temperature is None else req.temperature
        params = GenParams(max_tokens=max_tokens, temperature=temperature,
                           top_p=1.0 if req.top_p is None else req.top_p, stop=_stops(req),
                           tool_stop=tools is not None, seed=req.seed)
        return req, tools, prompt_ids, params

    async def generation(request: Request, fut: Future[Generation]) -> Generation | None:
        """The finished generation, or None once the client has gone (the request is then dropped)."""
        waiter = asyncio.wrap_future(fut)
        try:
            while True:
                done, _ = await asyncio.wait({waiter}, timeout=disconnect_poll_s)
                if done:
                    return waiter.result()
                if await request.is_disconnected():
                    engine.abandon(fut)
                    waiter.add_done_callback(lambda f: f.cancelled() or f.exception())  # nobody reads it
                    log.info("client went away: its request was dropped")
                    return None
        finally:
            if not fut.done():  # the handler itself was cancelled
                engine.abandon(fut)

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        authorize(request)
        raw = await read_body(request)
        req, tools, prompt_ids, params = await asyncio.get_running_loop().run_in_executor(workers(), prepare, raw)
        if await request.is_disconnected():
            return Response(status_code=499)  # the client left while its prompt was prepared
        try:
            gen = await generation(request, engine.submit(prompt_ids, params))
        except Exception as e:  # noqa: BLE001
            raise APIError(500, f"generation failed: {type(e).__name__}: {e}", kind="server_error") from None
        if gen is None:
            return Response(status_code=499)  # nobody is listening; nginx's code for "client closed request"

        parsed = parse_reply(gen.text, tools=tools is not None)
        message: dict[str, Any] = {"role": "assistant", "content": parsed.content}
        if parsed.reasoning is not None:
            message["reasoning_content"] = parsed.reasoning
        if parsed.tool_calls:
            message["tool_calls"] = parsed.tool_calls
        finish = "tool_calls" if parsed.tool_calls else gen.finish_reason
        usage = {"prompt_tokens": len(prompt_ids), "completion_tokens": gen.completion_tokens,
                 "total_tokens": len(prompt_ids) + gen.completion_tokens}
        reply_id, now = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if req.stream:
            include_usage = bool((req.stream_options or {}).get("include_usage"))
            chunks = _stream_chunks(reply_id, now, model_name, message, finish, usage if include_usage else None)
            return StreamingResponse(chunks, media_type="text/event-stream")
        return {
            "id": reply_id, "object": "chat.completion", "created": now, "model": model_name,
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": usage,
        }

    return app


def _stream_chunks(reply_id: str, created: int, model: str, message: dict[str, Any], finish: str,
                   usage: dict[str, int] | None) -> Iterator[str]:
    """A finished reply as server-sent ``chat.completion.chunk`` events."""
    def event(delta: dict[str, Any], finish_reason: str | None) -> str:
        chunk = {"id": reply_id, "object": "chat.completion.chunk", "created": created, "model": model,
                 "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}
        return f"data: {json.dumps(chunk)}\n\n"

    yield event({"role": "assistant", "content": ""}, None)
    delta: dict[str, Any] = {}
    if message.get("reasoning_content") is not None:
        delta["reasoning_content"] = message["reasoning_content"]
    if message.get("content"):
        delta["content"] = message["content"]
    if message.get("tool_calls"):
        delta["tool_calls"] = [{"index": k, **call} for k, call in enumerate(message["tool_calls"])]
    if delta:
        yield event(delta, None)
    yield event({}, finish)
    if usage is not None:
        chunk = {"id": reply_id, "object": "chat.completion.chunk", "created": created, "model": model,
                 "choices": [], "usage": usage}
        yield f"data: {json.dumps(chunk)}\n\n"
    yield "data: [DONE]\n\n"


# ---------------------------------------------------------------------------------------- running it


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach.

    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("::1"), is_loopback("0.0.0.0")
    (True, True, True, False)
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_host(host: str, *, api_key: str | None = None) -> None:
    """Warn when the server would be reachable from other machines."""
    if not is_loopback(host):
        extra = "" if api_key else " and anyone who can reach it can use it (set --api-key)"
        warnings.warn(f"serving on {host}: the model is exposed beyond this machine{extra}", stacklevel=2)


class BackgroundServer:
    """Run an app with uvicorn on a background thread (tests, or serving inside another program).

    Use as a context manager; `base_url` is the ``…/v1`` root to give OpenAI clients. Port 0
    picks a free port.
    """

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0, *, log_level: str = "warning") -> None:
        import uvicorn

        check_host(host)
        self.host = host
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level))
        self.thread = threading.Thread(target=self.server.run, name="baorl-serve-http", daemon=True)
        self.port = port

    def start(self, timeout: float = 30.0) -> BackgroundServer:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the server did not start on {self.host}:{self.port}")
            time.sleep(0.02)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)

    @property
    def base_url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def run_server(
    model: str,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    chat_template: str = "auto",
    served_model_name: str | None = None,
    max_batch: int = 8,
    batch_wait_ms: float = 10.0,
    api_key: str | None = None,
    default_max_tokens: int = DEFAULT_MAX_TOKENS,
    dtype: str = "float32",
    device: str = "cpu",
    log_level: str = "info",
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> None:
    """Load `model` (``embedded`` or a checkpoint directory) and serve it until interrupted."""
    import uvicorn

    from baorl.models import chat_template as resolve_template
    from baorl.models import load_model

    if default_max_tokens < 1:
        raise ValueError(f"--max-tokens-default must be >= 1, got {default_max_tokens}")
    if max_body_bytes < 1:
        raise ValueError(f"--max-body-mb must be > 0, got {max_body_bytes / 2**20:g} MiB")
    check_host(host, api_key=api_key)
    lm, tokenizer = load_model(model, dtype=dtype, device=device)
    template = resolve_template(tokenizer, chat_template)
    engine = Engine(lm, tokenizer, max_batch=max_batch, batch_wait=batch_wait_ms / 1000)
    name = served_model_name or model
    app = create_app(engine, template, name, api_key=api_key, default_max_tokens=default_max_tokens,
                     max_body_bytes=max_body_bytes)
    log.warning("serving %s as %r on http://%s:%d/v1", model, name, host, port)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
