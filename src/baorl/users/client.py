"""A small client for OpenAI-compatible chat-completions endpoints that always returns JSON.

`LLMClient.chat_json` is the only call the LLM users make. In order, it:

1. looks the request up in a persistent on-disk cache (key: sha256 of model, messages and
   temperature), so re-running an evaluation costs no requests, and joins an identical request
   already in flight instead of sending another;
2. sends the request (temperature 0 by default, ``response_format={"type": "json_object"}`` unless
   the server rejects it) under an `asyncio.Semaphore` that bounds requests in flight;
3. parses the reply with `parse_json_reply` and the caller's `validate`; a reply that does not parse
   or validate counts as a transient failure, like a connection error, a timeout, a 429 or a 5xx;
4. retries transient failures with exponential backoff and jitter, and finally raises
   `SimulatorError`. Other HTTP errors (401, 403, 404, most 400s) raise `SimulatorError` at once.

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
import random
import re
import tempfile
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from baorl.records import clean_json, clean_text
from baorl.users.base import SimulatorError
from baorl.users.jsonfix import parse_json_reply

__all__ = ["LLMClient", "DEFAULT_CACHE_DIR"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: where replies are cached unless `cache_dir` or ``BAORL_CACHE_DIR`` says otherwise
DEFAULT_CACHE_DIR = Path("~/.cache/baorl/simulator")
_OPENAI_URL = "https://api.openai.com/v1"
_TRANSIENT_STATUS = {408, 409, 429}
_MAX_RETRY_AFTER = 60.0
_KEY_LIKE = re.compile(r"\b(sk-[A-Za-z0-9_\-*.]{3,})")


class LLMClient:
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
        self._base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or _OPENAI_URL).rstrip("/")
        self.__key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        cache_root = cache_dir or os.environ.get("BAORL_CACHE_DIR") or DEFAULT_CACHE_DIR
        self.cache_dir: Path | None = Path(cache_root).expanduser() if cache else None
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.timeout = float(timeout)
        self.concurrency = int(concurrency)
        self.temperature = float(temperature)
        self.json_mode = bool(json_mode)
        self.extra_body = dict(extra_body) if extra_body else None
        self.requests = 0
        self.cache_hits = 0
        self.retries = 0
        self.coalesced = 0
        # the SDK client, the semaphore and the requests in flight belong to one event loop; `Gym.step` runs each step in a
        # fresh `asyncio.run`, so keep one `_LoopState` per live loop
        self._per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState]
        self._per_loop = weakref.WeakKeyDictionary()

    # ------------------------------------------------------------------ identity

    @property
    def label(self) -> str:
        """The model name: what episode records store as their simulator."""
        return self.model

    @property
    def base_url(self) -> str:
        """The endpoint, with any ``user:password@`` removed."""
        parts = urlsplit(self._base_url)
        if "@" not in parts.netloc:
            return self._base_url
        return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()

    @property
    def host(self) -> str:
        """``host[:port]`` of the endpoint, for one-line descriptions."""
        return urlsplit(self.base_url).netloc or self.base_url

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

    def __getstate__(self) -> dict[str, Any]:
        # picklable (e.g. to ship a gym to a worker process): drop the per-loop SDK clients
        state = self.__dict__.copy()
        state["_per_loop"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._per_loop = weakref.WeakKeyDictionary()

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

        loop_state = self._resources()
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
        """The request with its retries; returns the validated value and the raw object."""
        last = "no attempt made"
        attempt = 0
        while True:
            async with loop_state.sem:
                try:
                    content = await self._create(loop_state.sdk, messages)
                    obj = clean_json(parse_json_reply(content))
                    value = validate(obj) if validate else obj
                except _Retry as e:
                    last, delay = e.reason, e.delay
                except SimulatorError:
                    raise
                except ValueError as e:  # the reply did not parse, or `validate` rejected it
                    last, delay = f"unusable reply: {self._scrub(e)}", 0.0
                except Exception as e:  # noqa: BLE001 (nested too deeply, a validator tripped): bad text too
                    last, delay = f"unusable reply ({type(e).__name__}): {self._scrub(e)}", 0.0
                else:
                    self._cache_write(key, messages, obj)
                    return value, obj
            if attempt >= self.max_retries:
                raise SimulatorError(
                    f"simulator {self.model!r} at {self.base_url} failed after {attempt + 1} attempt(s); "
                    f"last error: {last}"
                )
            attempt += 1
            self.retries += 1
            wait = max(self.backoff * 2 ** (attempt - 1) * (1 + 0.5 * random.random()), delay)
            log.warning(
                "simulator %s: %s; retry %d/%d in %.2fs", self.model, last, attempt, self.max_retries, wait
            )
            await asyncio.sleep(wait)

    async def _create(self, sdk: Any, messages: list[dict[str, str]]) -> str:
        """One request; returns the reply text or raises `_Retry` / `SimulatorError`."""
        import openai

        while True:
            kwargs: dict[str, Any] = {
                "model": self.model,
                "messages": messages,
                "temperature": self.temperature,
            }
            if self.json_mode:
                kwargs["response_format"] = {"type": "json_object"}
            if self.extra_body:
                kwargs["extra_body"] = self.extra_body
            try:
                self.requests += 1
                resp = await sdk.chat.completions.create(**kwargs)
            except openai.APITimeoutError:
                raise _Retry(f"timed out after {self.timeout:g}s") from None
            except openai.APIConnectionError as e:
                cause = f" ({self._scrub(e.__cause__)})" if e.__cause__ else ""
                raise _Retry(f"connection error: {self._scrub(e)}{cause}") from None
            except openai.APIStatusError as e:
                status = e.status_code
                if status == 400 and self.json_mode and "response_format" in str(e):
                    log.warning(
                        "simulator %s: server rejects response_format; sending without it", self.model
                    )
                    self.json_mode = False
                    continue
                text = f"HTTP {status}: {self._scrub(e)}"
                if status in _TRANSIENT_STATUS or status >= 500:
                    raise _Retry(text, _retry_after(e)) from None
                raise SimulatorError(
                    f"simulator {self.model!r} at {self.base_url} refused the request ({text})"
                ) from None
            except openai.OpenAIError as e:  # e.g. a response the SDK cannot read
                raise _Retry(f"{type(e).__name__}: {self._scrub(e)}") from None
            try:
                content = resp.choices[0].message.content
            except (AttributeError, IndexError, TypeError, KeyError):
                raise _Retry("malformed response: no choices[0].message.content") from None
            if not isinstance(content, str) or not content.strip():
                raise _Retry("empty reply")
            return clean_text(content)

    # ------------------------------------------------------------------ plumbing

    def _resources(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._per_loop.get(loop)
        if state is None:
            import openai

            sdk = openai.AsyncOpenAI(
                api_key=self.__key, base_url=self._base_url, timeout=self.timeout, max_retries=0
            )
            state = _LoopState(sdk, asyncio.Semaphore(self.concurrency))
            self._per_loop[loop] = state
        return state

    async def aclose(self) -> None:
        """Close the HTTP connections opened in the running event loop."""
        state = self._per_loop.pop(asyncio.get_running_loop(), None)
        if state is not None:
            await state.sdk.close()

    def _scrub(self, err: BaseException | str) -> str:
        """The error's text without the API key (or anything that looks like one)."""
        text = str(err)
        if self.__key and self.__key != "EMPTY":
            text = text.replace(self.__key, "***")
        text = _KEY_LIKE.sub("sk-***", text)
        return text if len(text) <= 300 else text[:300] + "..."

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


class _LoopState:
    """What one event loop needs: its SDK client, its semaphore, its requests in flight by key."""

    def __init__(self, sdk: Any, sem: asyncio.Semaphore) -> None:
        self.sdk, self.sem = sdk, sem
        self.inflight: dict[str, asyncio.Future[Any]] = {}


class _Retry(Exception):
    """A transient failure: `reason` for the log, `delay` the least wait the server asked for."""

    def __init__(self, reason: str, delay: float = 0.0) -> None:
        super().__init__(reason)
        self.reason, self.delay = reason, delay


def _retry_after(err: Any) -> float:
    try:
        value = float(err.response.headers.get("retry-after", 0))
    except (AttributeError, TypeError, ValueError):
        return 0.0
    return min(max(value, 0.0), _MAX_RETRY_AFTER)
