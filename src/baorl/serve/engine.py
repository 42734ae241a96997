"""Generation behind `baorl serve`: prompt rendering, a batching worker thread, reply parsing.

`Engine` owns one local model. Requests are queued from any thread (the HTTP event loop) and
served by a single worker thread, so the event loop never blocks on the model. The worker
collects the requests that arrive within a few milliseconds of each other (up to `max_batch`),
groups those that can share one ``model.generate`` call, and runs each group as one left-padded
batch:

- greedy requests (temperature 0) with the same stop strings share a batch, whatever their
  ``max_tokens`` (the batch runs to the largest, each reply is cut to its own);
- sampled requests share a batch when temperature, top_p and stop strings agree; a request with a
  ``seed`` always runs alone, so the same seed gives the same reply.

Generation stops at the tokenizer's end-of-turn tokens (EOS, ``<|im_end|>``), at the request's
`stop` strings (removed from the reply, as OpenAI does) and, when tools are offered, right after
``</tool_call>`` (kept: it closes the call). `parse_reply` then splits the text into content,
``<think>`` reasoning and Hermes tool calls.

A request whose client went away is dropped with `Engine.abandon`: skipped if it is still queued,
and, if its batch is already generating, its row stops at the next token (the batch ends as soon
as every row that still has a client is done).
"""

from __future__ import annotations

import json
import logging
import queue
import re
import threading
import time
import uuid
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList

from baorl.endpoint import split_think

log = logging.getLogger(__name__)

#: what `response_format={"type": "json_object"}` adds to the system prompt (best effort: no grammar)
JSON_MODE_HINT = "Reply with one valid JSON object only, with no text before or after it."
#: the stop string that ends a turn with a tool call, when tools are offered
TOOL_CALL_END = "</tool_call>"
_END_OF_TURN = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end|>")
_TOOL_CALL = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.S)


# ---------------------------------------------------------------------------------------- prompts


def render_prompt(
    tokenizer: Any,
    template: str,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]] | None = None,
    *,
    json_mode: bool = False,
    template_kwargs: dict[str, Any] | None = None,
) -> str:
    """The prompt text the server generates from: the chat template with a generation prompt.

    With `json_mode` the `JSON_MODE_HINT` is appended to the system message (one is added first
    if there is none). Tests that fit a model to the server use this same function.
    """
    msgs = [dict(m) for m in messages]
    if json_mode:
        if msgs and msgs[0].get("role") == "system":
            msgs[0]["content"] = f"{msgs[0].get('content') or ''}\n\n{JSON_MODE_HINT}".lstrip()
        else:
            msgs.insert(0, {"role": "system", "content": JSON_MODE_HINT})
    return tokenizer.apply_chat_template(
        msgs, tools=tools or None, chat_template=template, tokenize=False, add_generation_prompt=True,
        **(template_kwargs or {}),
    )


# ---------------------------------------------------------------------------------------- replies


@dataclass
class ParsedReply:
    """A generated text split the OpenAI way."""

    content: str | None
    reasoning: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)


def parse_reply(text: str, *, tools: bool = True) -> ParsedReply:
    """Split `text` into content, ``<think>`` reasoning and (if `tools`) Hermes tool calls.

    A reply that opens with reasoning but lacks ``<think>`` (the template already wrote it) counts
    everything before ``</think>`` as reasoning. A ``<tool_call>`` whose body is not a JSON object
    with a string ``name`` stays in the content. Content that is empty after the split is None.

    >>> r = parse_reply('<think>easy</think>\\n<tool_call>\\n{"name": "f", "arguments": {"x": 1}}\\n</tool_call>')
    >>> r.content, r.reasoning, r.tool_calls[0]["function"]
    (None, 'easy', {'name': 'f', 'arguments': '{"x": 1}'})
    >>> parse_reply("plan</think>Hello").reasoning, parse_reply("plan</think>Hello").content
    ('plan', 'Hello')
    >>> parse_reply('<tool_call>{"name": "f"}</tool_call>', tools=False).tool_calls
    []
    """
    reasoning, text = split_think(text)
    calls: list[dict[str, Any]] = []
    if tools:
        kept: list[str] = []
        pos = 0
        for m in _TOOL_CALL.finditer(text):
            call = _tool_call(m.group(1))
            if call is None:
                continue
            kept.append(text[pos: m.start()])
            pos = m.end()
            calls.append(call)
        text = "".join(kept) + text[pos:]
    content = text.strip()
    return ParsedReply(content or None, reasoning, calls)


def _tool_call(body: str) -> dict[str, Any] | None:
    try:
        obj, _ = json.JSONDecoder().raw_decode(body.strip())
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str):
        return None
    args = obj.get("arguments", obj.get("parameters", {}))
    return {
        "id": f"call_{uuid.uuid4().hex[:24]}",
        "type": "function",
        "function": {"name": obj["name"], "arguments": args if isinstance(args, str) else json.dumps(args)},
    }


# ---------------------------------------------------------------------------------------- generation


@dataclass(frozen=True)
class GenParams:
    """Sampling settings of one request. ``temperature == 0`` is greedy decoding."""

    max_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    tool_stop: bool = False
    seed: int | None = None

    def batch_key(self, unique: int) -> tuple[Any, ...]:
        """Requests with equal keys can share one ``generate`` call."""
        stops = (self.stop, self.tool_stop)
        if self.temperature == 0:
            return ("greedy", *stops)
        if self.seed is not None:
            return ("seeded", unique)
        return ("sample", self.temperature, self.top_p, *stops)


@dataclass
class Generation:
    """One finished generation: its text, the tokens it cost, and why it ended."""

    text: str
    completion_tokens: int
    finish_reason: str  # "stop" | "length"


@dataclass
class _Job:
    prompt_ids: list[int]
    params: GenParams
    future: Future[Generation]
    abandoned: threading.Event = field(default_factory=threading.Event)


class Engine:
    """A local model and the worker thread that runs every generation.

    Args:
        model: a transformers causal LM (eval mode) on its device.
        tokenizer: its tokenizer.
        max_batch: most requests in one ``generate`` call.
        batch_wait: seconds the worker waits for more requests after the first one arrives.

    Attributes:
        batches: ``generate`` calls run so far; `largest_batch`: the most rows one of them had.
        abandoned: requests dropped by `abandon` (their clients went away).
    """

    def __init__(self, model: Any, tokenizer: Any, *, max_batch: int = 8, batch_wait: float = 0.01) -> None:
        if int(max_batch) != max_batch or max_batch < 1:
            raise ValueError(f"max_batch must be an integer >= 1, got {max_batch!r}")
        if batch_wait < 0:
            raise ValueError(f"batch_wait must be >= 0 seconds, got {batch_wait!r}")
        self.model, self.tokenizer = model, tokenizer
        self.max_batch, self.batch_wait = int(max_batch), float(batch_wait)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.eos_ids = self._end_of_turn_ids()
        self.context_length = int(getattr(model.config, "max_position_embeddings", 0) or 0) or None
        self.batches = 0
        self.largest_batch = 0
        self.abandoned = 0
        self._jobs: dict[Future[Generation], _Job] = {}  # queued or generating, by their futures
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _end_of_turn_ids(self) -> list[int]:
        ids: set[int] = set()
        eos = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        for value in (self.tokenizer.eos_token_id, eos):
            if isinstance(value, int):
                ids.add(value)
            elif isinstance(value, (list, tuple)):
                ids.update(int(v) for v in value)
        vocab = self.tokenizer.get_vocab()
        ids.update(vocab[t] for t in _END_OF_TURN if t in vocab)
        return sorted(ids)

    # ---- the worker ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker thread (idempotent)."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="baorl-serve-generate", daemon=True)
                self._thread.start()

    def close(self) -> None:
        """Stop the worker after the requests already queued."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join()

    def submit(self, prompt_ids: list[int], params: GenParams) -> Future[Generation]:
        """Queue one generation; the future resolves on the worker thread."""
        self.start()
        fut: Future[Generation] = Future()
        job = _Job(list(prompt_ids), params, fut)
        self._jobs[fut] = job
        fut.add_done_callback(lambda f: self._jobs.pop(f, None))
        self._queue.put(job)
        return fut

    @property
    def pending(self) -> int:
        """Requests queued or generating."""
        return len(self._jobs)

    def abandon(self, fut: Future[Generation]) -> bool:
        """Drop the request behind `fut` (its client went away); False if it had finished or was dropped.

        A queued request is cancelled and never generates; a generating one stops at its next
        token, and its batch ends once the rows still wanted are done.
        """
        job = self._jobs.get(fut)
        if job is None or fut.done() or job.abandoned.is_set():
            return False
        job.abandoned.set()
        fut.cancel()  # succeeds while queued; a running future finishes on the worker
        self.abandoned += 1
        return True

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            jobs, closing = [job], False
            deadline = time.monotonic() + self.batch_wait
            while len(jobs) < self.max_batch:
                try:
                    nxt = self._queue.get(timeout=max(deadline - time.monotonic(), 0.0))
                except queue.Empty:
                    break
                if nxt is None:
                    closing = True
                    break
                jobs.append(nxt)
            groups: dict[tuple[Any, ...], list[_Job]] = {}
            for i, j in enumerate(jobs):
                if j.future.set_running_or_notify_cancel():  # skip requests whose client went away
                    groups.setdefault(j.params.batch_key(i), []).append(j)
            for group in groups.values():
                group = [j for j in group if not j.abandoned.is_set()]  # dropped while an earlier group ran
                for j in jobs:
                    if j.abandoned.is_set() and not j.future.done():
                        j.future.set_exception(RequestAbandoned("the client went away"))
                if not group:
                    continue
                try:
                    results = self.generate([j.prompt_ids for j in group], [j.params for j in group],
                                            abandoned=[j.abandoned for j in group])
                except Exception as e:  # noqa: BLE001 (handed to the waiting request)
                    log.exception("generation failed")
                    for j in group:
                        j.future.set_exception(e)
                else:
                    for j, r in zip(group, results, strict=True):
                        j.future.set_result(r)
            if closing:
                return

    # ---- one batched generate -----------------------------------------------------------------------
    def generate(self, prompts: list[list[int]], params: list[GenParams], *,
                 abandoned: list[threading.Event] | None = None) -> list[Generation]:
        """Generate for `prompts` in one left-padded batch; the rows must share a `batch_key`.

        `abandoned`: one flag per row; a row whose flag is set stops at its next token (its client
        went away), and the batch ends once every row is done.
        """
        p0 = params[0]
        width = max(len(p) for p in prompts)
        rows = [[self.pad_id] * (width - len(p)) + p for p in prompts]
        mask = [[0] * (width - len(p)) + [1] * len(p) for p in prompts]
        device = self.model.device
        input_ids = torch.tensor(rows, dtype=torch.long, device=device)
        attention_mask = torch.tensor(mask, dtype=torch.long, device=device)
        config = GenerationConfig(
            max_new_tokens=max(p.max_tokens for p in params),
            do_sample=p0.temperature > 0,
            temperature=p0.temperature if p0.temperature > 0 else None,
            top_p=p0.top_p if p0.temperature > 0 else None,
            top_k=None,
            eos_token_id=self.eos_ids,
            pad_token_id=self.pad_id,
        )
        stops = self._stop_strings(p0)
        criteria = StoppingCriteriaList([_StopOnText(self.tokenizer, stops, width)] if stops else [])
        if abandoned is not None:
            if len(abandoned) != len(prompts):
                raise ValueError(f"got {len(abandoned)} abandoned flags for {len(prompts)} prompts")
            criteria.append(_StopAbandoned(abandoned))
        with torch.inference_mode():
            if p0.seed is not None and p0.temperature > 0:
                torch.manual_seed(p0.seed)
            out = self.model.generate(
                input_ids=input_ids, attention_mask=attention_mask, generation_config=config,
                stopping_criteria=criteria or None,
            )
        self.batches += 1
        self.largest_batch = max(self.largest_batch, len(prompts))
        return [self._finish(out[i, width:].tolist(), p) for i, p in enumerate(params)]

    @staticmethod
    def _stop_strings(p: GenParams) -> list[str]:
        return [s for s in p.stop if s] + ([TOOL_CALL_END] if p.tool_stop else [])

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _finish(self, ids: list[int], p: GenParams) -> Generation:
        """Cut one row at its end: end-of-turn token, stop string or its own `max_tokens`."""
        ids = ids[: p.max_tokens]
        end = next((i for i, t in enumerate(ids) if t in self.eos_ids or t == self.pad_id), None)
        body = ids if end is None else ids[:end]
        text = self._decode(body)
        hit = _first_stop(text, p)
        if hit is not None:
            cut, needle = hit
            # the tokens it took to write the stop string: the shortest prefix whose text holds it
            lo, hi = 1, len(body)
            while lo < hi:
                mid = (lo + hi) // 2
                if needle in self._decode(body[:mid]):
                    hi = mid
                else:
                    lo = mid + 1
            return Generation(text[:cut], lo, "stop")
        if end is not None:
            return Generation(text, end + 1, "stop")  # the end-of-turn token counts, as in vLLM
        return Generation(text, len(ids), "length")


def _first_stop(text: str, p: GenParams) -> tuple[int, str] | None:
    """(where the reply ends, the stop string) for the earliest stop string in `text`, if any."""
    best: tuple[int, int, str] | None = None
    for s in p.stop:
        i = text.find(s) if s else -1
        if i >= 0 and (best is None or i < best[0]):
            best = (i, i, s)  # a user stop string is not part of the reply
    if p.tool_stop:
        i = text.find(TOOL_CALL_END)
        if i >= 0 and (best is None or i < best[0]):
            best = (i, i + len(TOOL_CALL_END), TOOL_CALL_END)  # the closing tag is kept
    return None if best is None else (best[1], best[2])


class RequestAbandoned(Exception):
    """Set on the future of a request dropped by `Engine.abandon` (nobody is waiting for it)."""


class _StopAbandoned(StoppingCriteria):
    """A stopping criterion: a row is done once its request has been abandoned."""

    def __init__(self, flags: list[threading.Event]) -> None:
        self.flags = flags

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        return torch.tensor([f.is_set() for f in self.flags], dtype=torch.bool, device=input_ids.device)


class _StopOnText(StoppingCriteria):
    """A stopping criterion: a row is done once its generated text contains a stop string."""

    def __init__(self, tokenizer: Any, stops: list[str], prompt_width: int) -> None:
        self.tokenizer, self.stops, self.width = tokenizer, stops, prompt_width
        self.tail = max(len(s) for s in stops) + 4  # tokens: every token holds at least one character

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        done = []
        for row in input_ids[:, self.width:].tolist():
            text = self.tokenizer.decode(row[-self.tail:], skip_special_tokens=True)
            done.append(any(s in text for s in self.stops))
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)
