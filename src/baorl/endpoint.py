"""The one way baorl talks to an OpenAI-compatible endpoint, and the one way it reads a model's reasoning.

`EndpointClient` is what the `openai:MODEL` agent (and so the teachers) and the LLM simulators and
judges share:

- where the endpoint is: ``base_url`` (default ``OPENAI_BASE_URL``, else OpenAI's API) and the key
  (default ``OPENAI_API_KEY``, else ``"EMPTY"``), which is never shown: not in ``repr``, errors or
  logs, and error texts from the server are scrubbed of it (`scrub`);
- one SDK client per event loop (callers may run each step in a fresh `asyncio.run`), closed by
  `aclose`, dropped on pickling;
- one request (`_send`), with the SDK's own timeout, and one retry policy (`_with_retries`).

The retry policy. Transient failures are a timeout, a connection error, HTTP 408/409/429 or 5xx, a
body the SDK cannot decode or a reply without ``choices[0].message``, and anything the caller
calls unusable (`Transient`, e.g. a simulator reply that is not the JSON asked for). They are retried
``max_retries`` times, retry k after ``backoff * 2**(k-1)`` seconds plus up to 50% jitter (at least a
429's ``Retry-After``, capped at 60 s); then the caller's error (`AgentError`, `SimulatorError`) says
what failed last. Other HTTP errors raise that error at once. The SDK's own retries are off
(``max_retries=0``): its loop cannot retry a reply that parsed as HTTP but is unusable to baorl, has
its own fixed backoff (not ``backoff``), and hides its attempts from the ``requests``/``retries``
counters; its timeout is used as is.

`split_think` is the one parser of the ``<think>`` reasoning in model output (used by the gyms'
action parser, ``baorl serve`` and the simulators' JSON reader).

This module sits below gyms, agents, users and rollout, and imports none of them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar, TypeVar
from urllib.parse import urlsplit

__all__ = ["EndpointClient", "Transient", "scrub", "split_think", "OPENAI_URL"]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: the endpoint when neither ``base_url`` nor ``OPENAI_BASE_URL`` names one
OPENAI_URL = "https://api.openai.com/v1"
_TRANSIENT_STATUS = {408, 409, 429}
_MAX_RETRY_AFTER = 60.0
_KEY_LIKE = re.compile(r"\b(sk-[A-Za-z0-9_\-*.]{3,})")
_OPEN, _CLOSE = "<think>", "</think>"


# ---- model output -------------------------------------------------------------------------------------


def split_think(text: str) -> tuple[str | None, str]:
    """``(reasoning, rest)``: the ``<think>`` reasoning of `text` and the text without it.

    Every ``<think>...</think>`` block is taken out of `rest`; one left open runs to the end of the
    text (a reply cut off while thinking). With no ``<think>`` but a ``</think>`` (the chat template
    already opened the block), everything before it is reasoning. `reasoning` is the first block's
    text, stripped, or None when there is no block.

    >>> split_think("<think> plan </think>[answer] 42")
    ('plan', '[answer] 42')
    >>> split_think("plan</think>Hello"), split_think("<think>cut off"), split_think("no block")
    (('plan', 'Hello'), ('cut off', ''), (None, 'no block'))
    """
    if _OPEN not in text:
        if _CLOSE not in text:
            return None, text
        head, _, tail = text.partition(_CLOSE)
        return head.strip(), tail
    reasoning: str | None = None
    kept: list[str] = []
    pos = 0
    while (start := text.find(_OPEN, pos)) >= 0:
        kept.append(text[pos:start])
        end = text.find(_CLOSE, start + len(_OPEN))
        inner = text[start + len(_OPEN): len(text) if end < 0 else end]
        if reasoning is None:
            reasoning = inner.strip()
        pos = len(text) if end < 0 else end + len(_CLOSE)
    kept.append(text[pos:])
    return reasoning, "".join(kept)


# ---- the endpoint -------------------------------------------------------------------------------------


def scrub(err: BaseException | str, key: str | None = None, limit: int | None = 300) -> str:
    """The error's text without `key` or anything that looks like an API key, cut at `limit` characters.

    >>> scrub("bad key sk-abc123 (sent sk-abc123)"), scrub("token s3cret refused", "s3cret")
    ('bad key sk-*** (sent sk-***)', 'token *** refused')
    """
    text = str(err)
    if key and key != "EMPTY":
        text = text.replace(key, "***")
    text = _KEY_LIKE.sub("sk-***", text)
    return text if limit is None or len(text) <= limit else text[:limit] + "..."


class Transient(Exception):
    """A failure worth another attempt: `reason` for the log and the final error, `delay` the least wait."""

    def __init__(self, reason: str, delay: float = 0.0) -> None:
        super().__init__(reason)
        self.reason, self.delay = reason, delay


class LoopState:
    """What one event loop holds: its SDK client (subclasses add their own, e.g. a semaphore)."""

    def __init__(self, sdk: Any) -> None:
        self.sdk = sdk


class EndpointClient:
    """Base of the classes that send chat completions to one OpenAI-compatible endpoint.

    A subclass calls `_connect` from its ``__init__``, names itself in `_who` (for errors and logs)
    and sets `_error` to the exception its callers expect. Plain attributes (``max_retries``,
    ``backoff``, ``timeout``) may be changed after construction.

    Attributes:
        requests: HTTP requests sent (attempts, including retries).
        retries: attempts repeated after a transient failure.
    """

    _error: ClassVar[type[Exception]] = RuntimeError

    def _connect(
        self, base_url: str | None, api_key: str | None, *, timeout: float, max_retries: int, backoff: float
    ) -> None:
        self._base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_URL).rstrip("/")
        self.__key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        self.timeout, self.max_retries, self.backoff = float(timeout), int(max_retries), float(backoff)
        self.requests = 0
        self.retries = 0
        self._per_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()

    @property
    def _who(self) -> str:
        return type(self).__name__

    # ---- identity -------------------------------------------------------------------------------------
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

    def _scrub(self, err: BaseException | str, limit: int | None = 300) -> str:
        return scrub(err, self.__key, limit)

    # ---- per event loop -------------------------------------------------------------------------------
    def _new_loop_state(self, sdk: Any) -> LoopState:
        return LoopState(sdk)

    def _loop_state(self) -> Any:
        """This event loop's `LoopState`, made (with its SDK client) on first use."""
        loop = asyncio.get_running_loop()
        state = self._per_loop.get(loop)
        if state is None:
            import openai

            sdk = openai.AsyncOpenAI(api_key=self.__key, base_url=self._base_url, timeout=self.timeout,
                                     max_retries=0)
            state = self._new_loop_state(sdk)
            self._per_loop[loop] = state
        return state

    async def aclose(self) -> None:
        """Close the HTTP connections opened in the running event loop."""
        state = self._per_loop.pop(asyncio.get_running_loop(), None)
        if state is not None:
            await state.sdk.close()

    def __getstate__(self) -> dict[str, Any]:
        # picklable (a gym or agent shipped to a worker process): the per-loop SDK clients stay behind
        state = self.__dict__.copy()
        state["_per_loop"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._per_loop = weakref.WeakKeyDictionary()

    # ---- the request and its retries -------------------------------------------------------------------
    def _resend_without(self, err: Any) -> bool:
        """Whether a refused request should go again at once, changed (a subclass drops an option)."""
        return False

    async def _send(self, sdk: Any, request: Callable[[], dict[str, Any]]) -> Any:
        """One chat completion (``request()`` gives its fields); returns ``choices[0].message``.

        Raises `Transient` for what `_with_retries` retries, `_error` when the server refuses.
        """
        import openai

        while True:
            self.requests += 1
            try:
                resp = await sdk.chat.completions.create(**request())
            except openai.APITimeoutError:
                raise Transient(f"timed out after {self.timeout:g}s") from None
            except openai.APIConnectionError as e:
                cause = f" ({self._scrub(e.__cause__)})" if e.__cause__ else ""
                raise Transient(f"connection error: {self._scrub(e)}{cause}") from None
            except openai.APIStatusError as e:
                text = f"HTTP {e.status_code}: {self._scrub(e)}"
                if e.status_code in _TRANSIENT_STATUS or e.status_code >= 500:
                    raise Transient(text, _retry_after(e)) from None
                if self._resend_without(e):
                    continue
                raise self._error(f"{self._who} at {self.base_url} refused the request ({text})") from None
            except openai.OpenAIError as e:  # e.g. a response the SDK cannot read
                raise Transient(f"{type(e).__name__}: {self._scrub(e)}") from None
            except (ValueError, RecursionError) as e:  # a body the SDK could not decode (or nested too deeply)
                raise Transient(f"malformed response ({type(e).__name__}): {self._scrub(e)}") from None
            try:
                return resp.choices[0].message
            except (AttributeError, IndexError, TypeError, KeyError):
                raise Transient("malformed response: no choices[0].message") from None

    async def _with_retries(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """``await attempt()`` until it returns, retrying `Transient` failures (see the module's policy)."""
        tries, last, delay = 0, "no attempt made", 0.0
        while True:
            try:
                return await attempt()
            except Transient as e:
                last, delay = e.reason, e.delay
            if tries >= self.max_retries:
                raise self._error(
                    f"{self._who} at {self.base_url} failed after {tries + 1} attempt(s); last error: {last}"
                )
            tries += 1
            self.retries += 1
            wait = max(self.backoff * 2 ** (tries - 1) * (1 + 0.5 * random.random()), delay)
            log.warning("%s: %s; retry %d/%d in %.2fs", self._who, last, tries, self.max_retries, wait)
            await asyncio.sleep(wait)


def _retry_after(err: Any) -> float:
    try:
        value = float(err.response.headers.get("retry-after", 0))
    except (AttributeError, TypeError, ValueError):
        return 0.0
    return min(max(value, 0.0), _MAX_RETRY_AFTER)
