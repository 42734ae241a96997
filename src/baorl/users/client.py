"""A small client for OpenAI-compatible chat-completions endpoints that always returns JSON.

`LLMClient.chat_json` is the only call the LLM users make. In order, it:

1. looks the request up in a persistent on-disk cache (key: sha256 of model, messages and
   temperature), so re-running an evaluation costs no requests, and joins an identical request
   already in flight instead of sending another;
2. sends the request (temperature 0 by default, ``response_format={"type": "json_object"}`` unless
   the server rejects it) under an `asyncio.Semaphore` that bounds requests in flight;
3. parses the reply with `parse_json_reply` and the caller's `validate`; a reply that does not parse
   or validate counts as a transient failure, like a connection error, a timeout, a 429 or a 5xx;
4. retries transient failures with exponential backoff and jitter (the policy of
   `baorl.endpoint`, shared with the ``openai:`` agent), and finally raises `SimulatorError`.
   Other HTTP errors (401, 403, 404, most 400s) raise `SimulatorError` at once.

Only validated replies are cached. The API key is never shown: not in `repr`, error messages or
logs (error texts from the server are scrubbed of it too).

Bad text never escapes as anything but `SimulatorError`: lone surrogates in a reply (or in the
agent's text quoted in a prompt) become U+FFFD before they are parsed, cached or hashed; a reply
nested too deeply, or one that trips a validator in an unexpected way, counts as unusable and is
retried; a cache that cannot be written is logged and skipped.

Example:
    >>> client = LLMClient("gpt-4o", base_url="http://localhost:8000/v1", api_key="sk-secret")
    >>> client
    LLMClient(model='gpt-4o', base_url='http://localhost:8000/v1', json_mode=True)
    >>> client.label, client.host
    ('gpt-4o', 'localhost:8000')
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from baorl.endpoint import EndpointClient, LoopState, Transient
from baorl.records import clean_json, clean_text
from baorl.users.base import SimulatorError
from baorl.users.jsonfix import parse_json_reply

__all__ = ["LLMClient", "DEFAULT_CACHE_DIR"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: where replies are cached unless `cache_dir` or ``BAORL_CACHE_DIR`` says otherwise
DEFAULT_CACHE_DIR = Path("~/.cache/baorl/simulator")


class LLMClient(EndpointClient):
    """JSON chat completions against one model on one OpenAI-compatible endpoint.

    Args:
        model: model name as the server knows it (``gpt-4o``, ``Qwen/Qwen3-8B``); also the `label`
            that episode records store as their simulator.
        base_url: endpoint root, e.g. ``http://localhost:8000/v1``; default ``OPENAI_BASE_URL``, else
            OpenAI's API.
        api_key: default ``OPENAI_API_KEY``, else ``"EMPTY"`` (local servers need none).
        cache_dir: reply cache; default ``BAORL_CACHE_DIR``, else ``~/.cache/baorl/simulator``.
        cache: set False to neither read nor write the cache.
        max_retries: retries after the first attempt for transient failures (so ``max_retries + 1``
            attempts in all).
        backoff: base delay in seconds; attempt k waits ``backoff * 2**k`` plus up to 50% jitter
            (at least a 429's ``Retry-After``, capped at 60 s).
        timeout: per-request timeout in seconds.
        concurrency: most requests in flight at once (per event loop).
        temperature: sampling temperature (0 for reproducible simulators).
        json_mode: ask for ``response_format={"type": "json_object"}``; switched off for good if the
            server answers 400 about it.
        extra_body: extra fields for the request body, e.g.
            ``{"chat_template_kwargs": {"enable_thinking": False}}`` for a Qwen3 model served by vLLM.

    Attributes:
        requests: HTTP requests sent (attempts, including retries).
        cache_hits: replies served from the cache.
        retries: attempts repeated after a transient failure.
        coalesced: calls that shared the reply of an identical call already in flight (a GRPO
            group asking the same question at once costs one request).
    """

    _error = SimulatorError

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        *,
        cache_dir: str | os.PathLike[str] | None = None,
        cache: bool = True,
        max_retries: int = 4,
        backoff: float = 0.5,
        timeout: float = 60.0,
        concurrency: int = 8,
        temperature: float = 0.0,
        json_mode: bool = True,
        extra_body: dict[str, Any] | None = None,
    ) -> None:
        if not model or not model.strip():
            raise ValueError("model is empty: name the simulator model, e.g. 'openai:gpt-4o'")
        for name, value, low in (("max_retries", max_retries, 0), ("concurrency", concurrency, 1)):
            if int(value) != value or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        for name, value in (("backoff", backoff), ("timeout", timeout), ("temperature", temperature)):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")
        if timeout == 0:
            raise ValueError("timeout must be > 0 seconds")
        self.model = model.strip()
        self._connect(base_url, api_key, timeout=timeout, max_retries=max_retries, backoff=backoff)
        cache_root = cache_dir or os.environ.get("BAORL_CACHE_DIR") or DEFAULT_CACHE_DIR
        self.cache_dir: Path | None = Path(cache_root).expanduser() if cache else None
        self.concurrency = int(concurrency)
        self.temperature = float(temperature)
        self.json_mode = bool(json_mode)
        self.extra_body = dict(extra_body) if extra_body else None
        self.cache_hits = 0
        self.coalesced = 0

    # ------------------------------------------------------------------ identity

    @property
    def label(self) -> str:
        """The model name: what episode records store as their simulator."""
        return self.model

    @property
    def _who(self) -> str:
        return f"simulator {self.model!r}"

    def __repr__(self) -> str:
        return f"LLMClient(model={self.model!r}, base_url={self.base_url!r}, json_mode={self.json_mode})"

    def stats(self) -> dict[str, int]:
        """The counters, as a dict (for logs and benchmarks)."""
        return {
            "requests": self.requests,
            "cache_hits": self.cache_hits,
            "retries": self.retries,
            "coalesced": self.coalesced,
        }

    # ------------------------------------------------------------------ the call

    async def chat_json(
        self, messages: list[dict[str, str]], validate: Callable[[dict[str, Any]], T] | None = None
    ) -> T | dict[str, Any]:
        """Send `messages` and return the reply's JSON object (through `validate` if given).

        Args:
            messages: chat messages, ``[{"role": ..., "content": ...}, ...]``.
            validate: turns the parsed object into the caller's value; raising `ValueError` marks
                the reply as unusable, which is retried like any transient failure.

        Raises:
            SimulatorError: the retries are spent, or the server refused the request outright.
        """
        messages = clean_json(messages)
        key = self._cache_key(messages)
        cached = self._cache_read(key)
        if cached is not None:
            try:
                value = validate(cached) if validate else cached
            except ValueError:
                pass  # stale entry (the validator changed): ask again
            else:
                self.cache_hits += 1
                return value

        loop_state = self._loop_state()
        pending = loop_state.inflight.get(key)
        if pending is not None:  # the same request is already on its way: share its reply
            self.coalesced += 1
            shared = await asyncio.shield(pending)
            if isinstance(shared, SimulatorError):
                raise SimulatorError(str(shared))
            if shared is not None:
                try:
                    return validate(shared) if validate else shared
                except ValueError:
                    pass  # another validator: ask on our own below
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        loop_state.inflight.setdefault(key, future)
        result: Any = None
        try:
            value, result = await self._fetch(loop_state, key, messages, validate)
            return value
        except SimulatorError as e:
            result = e
            raise
        finally:
            if loop_state.inflight.get(key) is future:
                del loop_state.inflight[key]
            future.set_result(result)  # None when cancelled: followers then ask on their own

    async def _fetch(
        self, loop_state: _LoopState, key: str, messages: list[dict[str, str]], validate: Any
    ) -> tuple[Any, dict[str, Any]]:
        """The request with the endpoint's retries; returns the validated value and the raw object."""

        async def attempt() -> tuple[Any, dict[str, Any]]:
            async with loop_state.sem:
                try:
                    message = await self._send(loop_state.sdk, lambda: self._request(messages))
                    content = getattr(message, "content", None)
                    if not isinstance(content, str) or not content.strip():
                        raise Transient("empty reply")
                    obj = clean_json(parse_json_reply(clean_text(content)))
                    value = validate(obj) if validate else obj
                except (Transient, SimulatorError):
                    raise
                except ValueError as e:  # the reply did not parse, or `validate` rejected it
                    raise Transient(f"unusable reply: {self._scrub(e)}") from None
                except Exception as e:  # noqa: BLE001 (nested too deeply, a validator tripped): bad text too
                    raise Transient(f"unusable reply ({type(e).__name__}): {self._scrub(e)}") from None
            self._cache_write(key, messages, obj)
            return value, obj

        return await self._with_retries(attempt)

    def _request(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": self.temperature}
        if self.json_mode:
            kwargs["response_format"] = {"type": "json_object"}
        if self.extra_body:
            kwargs["extra_body"] = self.extra_body
        return kwargs

    def _resend_without(self, err: Any) -> bool:
        """A 400 about ``response_format``: json_mode goes off for good and the request goes again."""
        if err.status_code == 400 and self.json_mode and "response_format" in str(err):
            log.warning("simulator %s: server rejects response_format; sending without it", self.model)
            self.json_mode = False
            return True
        return False

    # ------------------------------------------------------------------ plumbing

    def _new_loop_state(self, sdk: Any) -> _LoopState:
        return _LoopState(sdk, asyncio.Semaphore(self.concurrency))

    def _cache_key(self, messages: list[dict[str, str]]) -> str:
        blob = json.dumps(
            {"model": self.model, "messages": messages, "temperature": self.temperature},
            sort_keys=True,
            ensure_ascii=False,
        )
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def _cache_path(self, key: str) -> Path | None:
        return None if self.cache_dir is None else self.cache_dir / key[:2] / f"{key}.json"

    def _cache_read(self, key: str) -> dict[str, Any] | None:
        path = self._cache_path(key)
        if path is None or not path.is_file():
            return None
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError, RecursionError):
            return None  # a torn or foreign file: ignore it, it will be overwritten
        reply = entry.get("reply") if isinstance(entry, dict) else None
        return reply if isinstance(reply, dict) else None

    def _cache_write(self, key: str, messages: list[dict[str, str]], reply: dict[str, Any]) -> None:
        """Write one entry atomically (temp file + rename), so concurrent writers never tear it."""
        path = self._cache_path(key)
        if path is None:
            return
        entry = {"model": self.model, "temperature": self.temperature, "messages": messages, "reply": reply}
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".json")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(entry, f, ensure_ascii=False)
                os.replace(tmp, path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except (OSError, ValueError, RecursionError) as e:  # a read-only or full disk, unencodable text:
            log.warning("simulator cache: could not write %s: %s", path, e)  # the episode goes on


class _LoopState(LoopState):
    """What one event loop needs: its SDK client, its semaphore, its requests in flight by key."""

    def __init__(self, sdk: Any, sem: asyncio.Semaphore) -> None:
        super().__init__(sdk)
        self.sem = sem
        self.inflight: dict[str, asyncio.Future[Any]] = {}
