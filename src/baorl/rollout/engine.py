"""The token-exact, batched multi-turn rollout engine for local transformers policies.

`RolloutEngine.arun(gyms)` plays one episode per gym and returns a `Trajectory` per episode: the
`Episode` record (the same semantics as `baorl.runs.play`) plus what training needs, token by
token. How it works, in the order a run goes:

1. **Prompts.** Each gym is reset; system and task prompt are rendered by the chat template and
   tokenised (`ChatRenderer`). A prompt longer than ``max_prompt_tokens`` ends its episode at once
   (termination ``token_budget``, no turns, ``error`` set). Identical prompts (one task, n rollouts)
   are prefilled once, and so is the prefix all new prompts share (the system prompt); the run
   remembers its last prompt prefix, so later waves of episodes reuse it.
2. **Batch.** Up to ``batch_size`` episodes decode together in one forward pass per generated
   token, over one KV cache (`KVBatch`) whose rows are aligned to a common length; gaps are masked
   and positions are passed explicitly, so a row's tokens do not depend on its batch mates. The
   prompt prefix every row shares is stored once and attended to once per layer for all rows
   (`baorl.rollout.attention`, Llama/Qwen-style models). The policy's tokens go into the cache as
   sampled: they are never decoded and re-tokenised.
3. **Stopping.** A row stops its turn at an end-of-sequence / end-of-turn token, at the end of a
   tool call (a stop string, ``</tool_call>``, found in the decoded tail of the turn), at
   ``max_new_tokens_per_turn``, or when the episode's response budget (every token after the
   prompt, the policy's and the observations', as verl counts "response") is spent.
4. **Acting.** A stopped turn is decoded and parsed (`parse_action`); no valid tool call ends the
   episode (``no_tool_call``), budget spent mid-generation ends it (``token_budget``); otherwise
   ``gym.astep`` starts at once, as an asyncio task, while the other rows keep decoding (the
   forward passes run in a worker thread, so simulators waiting on I/O overlap with generation).
   Rows that stopped leave the decoding batch once they are a quarter of it (their KV rows are
   parked, not recomputed), so they cost nothing while the others finish.
5. **Next turn.** When no row is decoding, the engine waits for the pending gym steps, appends
   each continuing row's observation segment (the template's text for end-of-turn + tool message +
   generation prompt, tokenised alone; loss mask 0), admits queued episodes into the free rows, and
   regathers every ready row into one compact batch (gaps dropped). Turns are synchronous within a
   batch: a row waits for the slowest row of its turn. Admission respects ``max_kv_gib``: when the
   live rows' next turn would not fit, the most recently admitted rows are preempted (their cache is
   dropped, they go back to the head of the queue and are prefilled again when they rejoin).

The recorded log-probability of a token is ``log_softmax(logits / temperature)`` at that token
(raw logits when greedy); see `baorl.rollout.sampling`. Each episode samples from its own random
stream, seeded from (seed, call number, episode index): a run is reproducible, and an episode's
tokens do not depend on ``batch_size`` (up to floating-point rounding of the logits).

Not supported: sliding-window or linear-attention layers (`check_supported` raises), templates
that re-render earlier turns (`TemplateError`). The engine is not re-entrant: one run at a time.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import torch
from pydantic import ConfigDict, Field

from baorl.gyms.base import Gym
from baorl.gyms.parser import ParsedAction
from baorl.rollout import attention
from baorl.rollout.attention import PrefixKV
from baorl.rollout.episode import EpisodeLimits, Limits, StopRule, TokenEpisode, eos_ids, step_gym
from baorl.rollout.kvcache import KVBatch, check_supported, kv_bytes_per_token
from baorl.rollout.render import ChatRenderer
from baorl.rollout.sampling import sample_next
from baorl.rollout.trajectory import Trajectory

__all__ = ["EngineConfig", "RolloutEngine", "Trajectory", "LogitsProcessor"]

log = logging.getLogger(__name__)

#: shorter common prefixes are not worth a separate attention pass
_MIN_PREFIX = 16
#: logits hook: (each decoding row's context ids, logits (rows, vocab)) -> logits
LogitsProcessor = Callable[[list[list[int]], torch.Tensor], torch.Tensor]


def _no_stop_iteration(fn: Callable, *args: Any) -> Any:
    """Run `fn` in the forward thread; a StopIteration escaping it (say, from a logits processor's
    ``next()``) would hang asyncio's future forever, so it becomes a RuntimeError."""
    try:
        return fn(*args)
    except StopIteration as e:
        raise RuntimeError(f"StopIteration escaped {getattr(fn, '__name__', fn)!r} in the forward thread") from e


class EngineConfig(EpisodeLimits):
    """Settings of a rollout run: the episode limits (`EpisodeLimits`) and how to sample and batch."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(1.0, ge=0.0, description="sampling temperature; 0 decodes greedily")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="nucleus sampling mass (1.0: off)")
    top_k: int = Field(0, ge=0, description="sample among the k most likely tokens only (0: off)")
    batch_size: int = Field(32, ge=1, description="most episodes decoded together; others queue")
    max_kv_gib: float | Literal["auto"] | None = Field(
        "auto", description="memory cap on the KV cache of the live episodes, in GiB, counted twice for "
        "regrouping copies (what each episode needs: see kv_admission); at least one episode always runs. auto: "
        "half the free GPU memory when each rollout starts (with what torch's allocator holds unused), or 40% "
        "of the machine's RAM on CPU; None: no cap")
    kv_admission: Literal["turn", "budget"] = Field(
        "turn", description="what max_kv_gib counts per live episode. turn: its cached tokens plus the most its "
        "next turn can add; an episode joins while that fits, and when the live episodes' next turn does not, "
        "the most recently admitted leave (preempted: their cache is dropped and recomputed from their tokens "
        "when they rejoin, as vLLM does). budget: its full budget (prompt + max_response_tokens); never "
        "preempts, but admits far fewer episodes when the budget is long")
    chat_template: str = Field("auto", description="auto, native, chatml-tools, qwen3, or Jinja source")
    template_kwargs: dict[str, Any] = Field(default_factory=dict, description="extra template variables")
    seed: int = Field(0, description="seed of the sampling streams (and the gyms' reset seed unless given)")
    stop_strings: list[str] = Field(default_factory=lambda: ["</tool_call>"],
                                    description="a turn ends once its text contains one of these")
    prefill_tokens: int = Field(4096, ge=1, description="most tokens (rows x positions) in one prefill forward")
    shared_prefix: bool = Field(True, description="keep the rows' common prompt prefix in the KV cache once "
                                "(Llama/Qwen-style attention only)")
    step_timeout_s: float | None = Field(None, gt=0, description="a gym step slower than this ends the episode "
                                         "as simulator_error (None: no limit)")
    pack_weights: bool = Field(True, description="on CPU with float32 weights, run the linear layers through "
                               "oneDNN with their weights repacked once per rollout (about 1.5-2x faster than "
                               "torch's default kernel at decoding batch sizes; holds one extra copy of the linear "
                               "weights while the rollout runs)")


def _kv_cap_bytes(cap: float | str | None, device: torch.device) -> int | None:
    """``max_kv_gib`` in bytes; ``auto`` from the device's memory now: on a GPU, half of what is free,
    counting memory torch's allocator holds unused as free (it is reused before the driver's)."""
    if cap is None:
        return None
    if cap != "auto":
        return int(float(cap) * 2**30)
    if device.type == "cuda":
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int((torch.cuda.mem_get_info(device)[0] + max(cached, 0)) * 0.5)
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 0.4)
    except (ValueError, OSError, AttributeError):  # not a POSIX system: no cap
        return None


class _PackedLinears:
    """The model's `nn.Linear` layers switched to oneDNN with prepacked weights, for one rollout.

    On CPU, torch's default float32 kernel (MKL) reaches about half of oneDNN's speed on the
    products of decoding (a few dozen rows against a weight matrix streamed from memory; 2x on the
    49k-wide output layer). Packing copies each weight once into oneDNN's blocked layout (~0.5 s
    for 135M parameters); `restore` puts the layers back and drops the copies. A packed layer
    falls back to the plain product outside inference mode (autograd never sees the copies).
    """

    def __init__(self, model: Any, batch_hint: int) -> None:
        self.modules: list[torch.nn.Module] = []
        pack = torch.ops.mkldnn._reorder_linear_weight
        try:
            with torch.no_grad():
                for mod in model.modules():
                    w = getattr(mod, "weight", None)
                    if (type(mod) is not torch.nn.Linear or "forward" in mod.__dict__ or w is None
                            or w.dtype != torch.float32 or w.device.type != "cpu" or w.dim() != 2):
                        continue  # subclasses, hooked or quantised layers keep their own forward
                    mod.forward = self._forward(mod, pack(w.detach().contiguous(), max(1, batch_hint)))
                    self.modules.append(mod)
        except BaseException:
            self.restore()
            raise

    @staticmethod
    def _forward(mod: torch.nn.Linear, packed: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        linear = torch.ops.mkldnn._linear_pointwise

        def forward(x: torch.Tensor) -> torch.Tensor:
            if torch.is_inference_mode_enabled() and x.dtype == torch.float32:
                return linear(x, packed, mod.bias, "none", [], "")
            return torch.nn.functional.linear(x, mod.weight, mod.bias)

        return forward

    @staticmethod
    def usable(model: Any, device: torch.device) -> bool:
        try:
            ops = torch.ops.mkldnn._reorder_linear_weight, torch.ops.mkldnn._linear_pointwise
        except (AttributeError, RuntimeError):  # a torch build without these oneDNN ops
            return False
        return (all(ops) and device.type == "cpu" and torch.backends.mkldnn.is_available()
                and next(model.parameters()).dtype == torch.float32)

    def restore(self) -> None:
        for mod in self.modules:
            mod.__dict__.pop("forward", None)
        self.modules = []


@dataclass
class _Row(TokenEpisode):
    """One episode in flight: its `TokenEpisode` plus where it sits in the engine."""

    index: int = 0
    rng: torch.Generator | None = None
    n_cached: int = 0                  # ids[n_cached:] are not in the cache yet
    state: str = "new"                 # new, decode, stepping, ready, done
    batch: KVBatch | None = None
    slot: int = -1
    task: asyncio.Future | None = None


class RolloutEngine:
    """Plays gyms with a local causal LM, many episodes at once, recording tokens exactly.

    Args:
        model: a transformers causal LM (Llama, Qwen3, Mistral, … full-attention decoders).
        tokenizer: its tokenizer.
        config: the run settings (`EngineConfig`).
        name: the policy name written into each episode record (e.g. ``hf:embedded``).
        logits_processor: optional hook applied to each step's logits before sampling, given
            every decoding row's context ids (tests use it to force scripted outputs).
    """

    def __init__(self, model: Any, tokenizer: Any, config: EngineConfig | None = None, *, name: str = "hf",
                 logits_processor: LogitsProcessor | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.config = config or EngineConfig()
        self.name = name
        self.logits_processor = logits_processor
        self.num_layers = check_supported(model)
        self.kv_bytes_per_token = kv_bytes_per_token(model)
        self.renderer = ChatRenderer(tokenizer, self.config.chat_template, template_kwargs=self.config.template_kwargs)
        self.device = next(model.parameters()).device
        self.kv_cap_bytes = _kv_cap_bytes(self.config.max_kv_gib, self.device)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.stop_rule = StopRule(self.renderer, eos_ids(tokenizer, model), self.config.stop_strings)
        self.limits = Limits.of(self.config)
        self._keep_one = "logits_to_keep" in inspect.signature(model.forward).parameters
        self.shared_prefix = self.config.shared_prefix and attention.supports_prefix(model)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="baorl-forward")
        self._calls = 0
        self._running = False
        #: counters of the last `arun` (see `_new_stats`)
        self.stats: dict[str, float] = self._new_stats()
        self._done_cb: Callable[[Trajectory], None] | None = None
        self._prompt_cache: tuple[list[int], PrefixKV] | None = None

    @staticmethod
    def _new_stats() -> dict[str, float]:
        """generated: sampled tokens; prefilled / fed: prompt and observation tokens computed;
        decode_steps: batched decoding steps; decode_s / feed_s / sample_s / gather_s: seconds in
        decoding forward passes, prompt and observation forward passes, sampling (with the logits
        processor) and cache regrouping; parked: times stopped rows left the decoding batch;
        preempted / recomputed: times a live episode left for want of memory (``kv_admission: turn``)
        and the cached tokens it dropped (prefilled again when it rejoined, and counted in
        ``prefilled`` then); prefix_max: the longest prompt prefix shared in the cache; max_live: most
        episodes in play at once (``batch_size`` and ``max_kv_gib`` bound it); wall_s: the run's
        duration."""
        return dict.fromkeys(("generated", "prefilled", "fed", "decode_steps", "decode_s", "feed_s", "sample_s",
                              "gather_s", "parked", "preempted", "recomputed", "prefix_max", "max_live", "wall_s"),
                             0)

    # ---- public API -------------------------------------------------------------------------------
    def run(self, gyms: Sequence[Gym], **kw: Any) -> list[Trajectory]:
        """Synchronous `arun`."""
        return asyncio.run(self.arun(gyms, **kw))

    async def arun(
        self,
        gyms: Sequence[Gym],
        *,
        seeds: Sequence[int] | None = None,
        sample_seed: int | None = None,
        on_episode_done: Callable[[Trajectory], None] | None = None,
    ) -> list[Trajectory]:
        """Play one episode per gym; returns the trajectories in the order of `gyms`.

        Args:
            gyms: one gym per episode (distinct instances; the same task may repeat).
            seeds: each episode's reset seed (default: ``config.seed`` for all).
            sample_seed: seed of this call's sampling streams (default: derived from
                ``config.seed`` and how many times this engine has run, so repeated calls differ
                and a fresh engine with the same config repeats them).
            on_episode_done: called with each trajectory as soon as its episode ends.
        """
        if self._running:
            raise RuntimeError("this engine is already running a rollout; use one engine per concurrent run")
        if seeds is not None and len(seeds) != len(gyms):
            raise ValueError(f"got {len(seeds)} seeds for {len(gyms)} gyms; pass one seed per gym")
        if len({id(g) for g in gyms}) != len(gyms):
            raise ValueError("the same gym instance appears twice; pass one gym instance per episode")
        base = sample_seed if sample_seed is not None else self.config.seed * 1_000_003 + self._calls
        self._calls += 1
        self._done_cb = on_episode_done
        training = self.model.training
        self.model.eval()
        self._running = True
        self._prompt_cache = None  # (ids, PrefixKV): valid for this run's weights only
        # auto: measured again for every run (a trainer's optimiser states appear after its first rollout)
        self.kv_cap_bytes = _kv_cap_bytes(self.config.max_kv_gib, self.device)
        self.stats = self._new_stats()
        t0 = time.perf_counter()
        attn = self.model.config._attn_implementation
        if self.shared_prefix:
            self.model.config._attn_implementation = attention.NAME
        packed = None
        try:
            if self.config.pack_weights and _PackedLinears.usable(self.model, self.device):
                packed = _PackedLinears(self.model, self.config.batch_size)
            rows = [self._start(i, g, self.config.seed if seeds is None else int(seeds[i]), base)
                    for i, g in enumerate(gyms)]
            await self._loop(deque(r for r in rows if r.state != "done"))
        finally:
            if packed is not None:
                packed.restore()
            self._prompt_cache = None
            self.model.config._attn_implementation = attn
            self.stats["wall_s"] = time.perf_counter() - t0
            self._running = False
            self.model.train(training)
        return [r.result for r in rows]

    # ---- episode bookkeeping ----------------------------------------------------------------------
    def _start(self, i: int, gym: Gym, seed: int, base: int) -> _Row:
        rng = torch.Generator().manual_seed((base * 1_000_003 + i) % (1 << 62))
        row = _Row.start(gym, self.renderer, self.limits, seed=seed, index=i, rng=rng)
        if "prompt_too_long" in row.meta:
            msg = row.meta.pop("prompt_too_long")
            log.warning("episode %d (task %s): %s", i, gym.task.id, msg)
            self._finish(row, "token_budget", error=msg)
        return row

    def _finish(self, row: _Row, termination: str, **extra: Any) -> None:
        row.finish(termination, policy=self.name, **extra)
        self._done(row)

    def _done(self, row: _Row) -> None:
        row.state, row.batch, row.task = "done", None, None
        if self._done_cb is not None:
            self._done_cb(row.result)

    def _end_turn(self, row: _Row, reason: str) -> None:
        """A row stopped generating: parse its turn and start the gym step (or end the episode)."""
        parsed = row.end_turn(reason, self.stop_rule, policy=self.name)
        if parsed is None:
            self._done(row)
        else:
            row.state = "stepping"
            row.task = asyncio.ensure_future(self._step(row.gym, parsed))

    async def _step(self, gym: Gym, parsed: ParsedAction) -> tuple:
        return await step_gym(gym, parsed, self.config.step_timeout_s)

    def _after_step(self, row: _Row) -> None:
        """Record a finished gym step; end the episode or append the observation segment."""
        if row.after_step(row.task.result(), self.renderer, self.limits, policy=self.name):
            row.state = "ready"
        else:
            self._done(row)

    # ---- the loop ---------------------------------------------------------------------------------
    async def _loop(self, queue: deque[_Row]) -> None:
        live: list[_Row] = []
        while True:
            waiting = [r.task for r in live if r.state == "stepping" and not r.task.done()]
            if waiting:  # turns are synchronous: wait for every pending step of the last turn
                await asyncio.wait(waiting)
            for row in live:
                if row.state == "stepping":
                    self._after_step(row)
            live = [r for r in live if r.state != "done"]
            while len(live) > 1 and not self._fits(live):  # the next turn does not fit: preempt the newest
                queue.appendleft(self._preempt(live.pop()))
            new = []
            while queue and len(live) < self.config.batch_size and (not live or self._fits([*live, queue[0]])):
                new.append(queue.popleft())
                live.append(new[-1])
            if not live:
                return
            self.stats["max_live"] = max(self.stats["max_live"], len(live))
            if new:
                await self._prefill(new)
            batch = await self._regather(live, self._room(live, pending=True))
            await self._extend(batch, live)
            await self._decode(batch, live)

    def _fits(self, rows: list[_Row]) -> bool:
        """Whether `rows` fit `max_kv_gib` (twice: a regroup copies the cache). A row needs its tokens
        after its next turn (``turn``) or its full budget (``budget``), and the aligned batch holds
        every row at the longest row's length: one long episode among short ones counts for all."""
        if self.kv_cap_bytes is None:
            return True
        cfg = self.config
        if cfg.kv_admission == "budget":
            longest = max(r.prompt_len for r in rows) + cfg.max_response_tokens
        else:  # every token of a row is in the cache (or pending) before its turn; a turn adds at most this
            longest = max(len(r.ids) + max(0, self._gen_room(r, 0)) for r in rows)
        return 2 * len(rows) * longest * self.kv_bytes_per_token <= self.kv_cap_bytes

    def _preempt(self, row: _Row) -> _Row:
        """Drop a ready row's cache; it rejoins later as a new row, its tokens prefilled again."""
        self.stats["preempted"] += 1
        self.stats["recomputed"] += row.n_cached
        row.batch, row.slot, row.n_cached, row.state = None, -1, 0, "new"
        return row

    async def _run(self, fn: Callable, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, _no_stop_iteration, fn, *args)

    def _forward(self, batch: KVBatch, input_ids: list[list[int]], valid: list[list[bool]],
                 positions: list[list[int]], want_logits: bool) -> torch.Tensor | None:
        """One forward pass appending ``len(input_ids[0])`` columns to `batch` (worker thread)."""
        t0 = time.perf_counter()
        with torch.inference_mode():
            dev = self.device
            ids_t = torch.tensor(input_ids, dtype=torch.long, device=dev)
            attn = batch.append_mask(torch.tensor(valid, dtype=torch.bool, device=dev))
            kw: dict[str, Any] = {}
            if self._keep_one:
                kw["logits_to_keep"] = 1
            if batch.prefix is not None:
                kw["baorl_prefix"] = batch.prefix
            out = self.model(input_ids=ids_t, attention_mask=attn, past_key_values=batch.cache, use_cache=True,
                             position_ids=torch.tensor(positions, dtype=torch.long, device=dev), **kw)
            batch.advance(ids_t.shape[1])
            logits = out.logits[:, -1, :].float() if want_logits else None
        self.stats["decode_s" if want_logits else "feed_s"] += time.perf_counter() - t0
        return logits

    async def _feed(self, batch: KVBatch, feeds: list[list[int]], starts: list[int], kind: str) -> None:
        """Append each row's `feeds` tokens (right-padded, masked) at positions ``starts[i]…``, in chunks."""
        width = max((len(f) for f in feeds), default=0)
        if width == 0:
            return
        self.stats[kind] += sum(len(f) for f in feeds)
        step = max(1, self.config.prefill_tokens // len(feeds))
        for s in range(0, width, step):
            e = min(width, s + step)
            ids, valid, pos = [], [], []
            for f, p0 in zip(feeds, starts, strict=True):
                chunk = f[s:e]
                n = len(chunk)
                ids.append(chunk + [self.pad_id] * (e - s - n))
                valid.append([True] * n + [False] * (e - s - n))
                pos.append([p0 + s + j if j < n else p0 for j in range(e - s)])
            batch.reserve(e - s)
            await self._run(self._forward, batch, ids, valid, pos, False)

    async def _prefill(self, rows: list[_Row]) -> None:
        """Cache the prompts of new rows (all but their last token).

        Identical prompts are computed once; with `shared_prefix`, so is the prefix they all share.
        """
        unique: dict[tuple[int, ...], int] = {}
        for row in rows:
            key = tuple(row.ids[:-1])
            row.slot = unique.setdefault(key, len(unique))
        prompts = [list(k) for k in unique]
        common = len(os.path.commonprefix(prompts)) if self.shared_prefix else 0
        if common >= _MIN_PREFIX:
            tails = [p[common:] for p in prompts]
            batch = KVBatch(self.num_layers, len(prompts), max(1, max(len(t) for t in tails)), self.device)
            batch.prefix = await self._prefix_kv(prompts[0][:common])
            await self._feed(batch, tails, [common] * len(prompts), "prefilled")
        else:
            batch = KVBatch(self.num_layers, len(prompts), max(1, max(len(p) for p in prompts)), self.device)
            await self._feed(batch, prompts, [0] * len(prompts), "prefilled")
        for row in rows:
            row.batch, row.n_cached, row.state = batch, len(row.ids) - 1, "ready"

    def _room(self, rows: list[_Row], *, pending: bool) -> int:
        """Columns the rest of this turn can add: pending tokens (if not fed yet) + generation."""
        room = 0
        for r in rows:
            if pending:
                feed, made = len(r.ids) - r.n_cached - 1, 0
            else:
                feed, made = 0, len(r.ids) - r.turn_start
            room = max(room, feed + self._gen_room(r, made))
        return room

    def _gen_room(self, row: _Row, made: int) -> int:
        """Tokens `row` may still generate in a turn of which it has made `made` (turn cap and budget)."""
        return min(self.limits.max_new_tokens_per_turn - made, self.config.max_response_tokens - row.response_len)

    async def _prefix_kv(self, ids: list[int]) -> PrefixKV:
        """Keys and values of the prompt prefix `ids`, reusing the run's last prefix where it matches."""
        cached = self._prompt_cache
        reuse = len(os.path.commonprefix([cached[0], ids])) if cached is not None else 0
        if reuse >= _MIN_PREFIX and reuse == len(ids):
            return cached[1].head(reuse)
        head = KVBatch(self.num_layers, 1, len(ids) - reuse, self.device)
        if reuse >= _MIN_PREFIX:
            head.prefix = cached[1].head(reuse)
        else:
            reuse = 0
        await self._feed(head, [ids[reuse:]], [reuse], "prefilled")
        whole = await self._run(lambda: KVBatch.gather([(head, [0])], extra=0, device=self.device,
                                                       prefix_len=len(ids)))
        self._prompt_cache = (ids, whole.prefix)
        return whole.prefix

    async def _regather(self, rows: list[_Row], extra: int) -> KVBatch:
        """One compact batch with `rows`, in order, with `extra` free columns."""
        sources: list[tuple[KVBatch, list[int]]] = []
        for row in rows:
            if not sources or sources[-1][0] is not row.batch:
                sources.append((row.batch, []))
            sources[-1][1].append(row.slot)
        prefix = len(os.path.commonprefix([r.ids[: r.n_cached] for r in rows])) if self.shared_prefix else 0
        if prefix < _MIN_PREFIX:
            prefix = 0
        t0 = time.perf_counter()
        batch = await self._run(lambda: KVBatch.gather(sources, extra=extra, device=self.device, prefix_len=prefix))
        self.stats["gather_s"] += time.perf_counter() - t0
        self.stats["prefix_max"] = max(self.stats["prefix_max"], prefix)
        for i, row in enumerate(rows):
            row.batch, row.slot = batch, i
        return batch

    async def _extend(self, batch: KVBatch, rows: list[_Row]) -> None:
        """Feed each row's pending tokens but the last (the observation segment) into the cache."""
        feeds = [r.ids[r.n_cached:-1] for r in rows]
        await self._feed(batch, feeds, [r.n_cached for r in rows], "fed")
        for row in rows:
            row.n_cached = len(row.ids) - 1
            row.state, row.turn_start = "decode", len(row.ids)

    async def _decode(self, batch: KVBatch, rows: list[_Row]) -> None:
        """Generate one turn for every row of `batch` (slot i holds rows[i])."""
        cfg = self.config
        slots = list(rows)
        while True:
            active = [i for i, r in enumerate(slots) if r.state == "decode"]
            if not active:
                return
            if len(slots) - len(active) >= max(1, len(slots) // 4):  # park the stopped rows
                slots = [slots[i] for i in active]
                batch = await self._regather(slots, self._room(slots, pending=False))
                self.stats["parked"] += 1
                active = list(range(len(slots)))
            ids = [[r.ids[-1] if r.state == "decode" else self.pad_id] for r in slots]
            valid = [[r.state == "decode"] for r in slots]
            pos = [[len(r.ids) - 1] for r in slots]
            uniforms = None
            if cfg.temperature > 0:
                uniforms = torch.cat([torch.rand(1, generator=slots[i].rng) for i in active])
            tokens, logprobs = await self._run(self._step_tokens, batch, ids, valid, pos, active, slots, uniforms)
            self.stats["decode_steps"] += 1
            self.stats["generated"] += len(tokens)
            for i, tok, lp in zip(active, tokens, logprobs, strict=True):
                row = slots[i]
                row.n_cached = len(row.ids)
                row.add(tok, lp)
                reason = row.stop_reason(self.stop_rule, self.limits)
                if reason is not None:
                    self._end_turn(row, reason)
            await asyncio.sleep(0)  # let finished gym steps run their callbacks

    def _step_tokens(self, batch, ids, valid, pos, active, slots, uniforms) -> tuple[list[int], list[float]]:
        logits = self._forward(batch, ids, valid, pos, True)
        t0 = time.perf_counter()
        if len(active) < len(slots):
            logits = logits[active]
        if self.logits_processor is not None:
            logits = self.logits_processor([slots[i].ids for i in active], logits)
        cfg = self.config
        tokens, logprobs = sample_next(logits, temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p,
                                       uniforms=uniforms)
        out = tokens.tolist(), logprobs.tolist()
        self.stats["sample_s"] += time.perf_counter() - t0
        return out
