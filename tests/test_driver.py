"""The generic token driver (vLLM / verl path) records exactly what the local engine records.

The generator here is a plain transformers forward loop that, like a serving engine, returns a
whole generation of `max_new` tokens without knowing our stop rules; the driver must cut it at
the first stop, so its trajectories must equal the engine's token for token.
"""

from __future__ import annotations

import asyncio

import pytest
import torch
from test_engine import EXACT_SCRIPTS, Forcer, call, exact_gyms, probe

from baorl.rollout.driver import aplay_batch, aplay_tokens
from baorl.rollout.engine import EngineConfig, RolloutEngine
from baorl.rollout.episode import Limits
from baorl.rollout.render import ChatRenderer
from baorl.rollout.sampling import sample_next


class ServerLike:
    """Greedy full-length generation (no stop rules), counting calls and tokens thrown away."""

    def __init__(self, model, forcer: Forcer) -> None:
        self.model, self.forcer = model, forcer
        self.calls = 0
        self.batch_calls: list[int] = []

    def _one(self, ids: list[int], max_new: int) -> tuple[list[int], list[float]]:
        ids = list(ids)
        out, lps = [], []
        past, feed = None, ids  # incremental decoding with the model's own KV cache, as a server does
        with torch.inference_mode():
            for _ in range(max_new):
                res = self.model(input_ids=torch.tensor([feed]), past_key_values=past, use_cache=True)
                past = res.past_key_values
                logits = self.forcer([ids], res.logits[:, -1, :].float())
                tok, lp = sample_next(logits, temperature=0.0, top_k=0, top_p=1.0, uniforms=None)
                feed = [int(tok[0])]
                ids.append(int(tok[0]))
                out.append(int(tok[0]))
                lps.append(float(lp[0]))
        return out, lps

    async def generate(self, ids: list[int], max_new: int):
        self.calls += 1
        return self._one(ids, max_new)

    async def generate_batch(self, contexts: list[list[int]], max_new: list[int]):
        self.batch_calls.append(len(contexts))
        return [self._one(c, m) for c, m in zip(contexts, max_new, strict=True)]


@pytest.fixture(scope="module")
def setup(tok, llama):
    config = EngineConfig(temperature=0.0, max_new_tokens_per_turn=48, max_response_tokens=400)
    renderer = ChatRenderer(tok, config.chat_template)
    engine = RolloutEngine(llama, tok, config, name="test",
                           logits_processor=Forcer(renderer, exact_gyms(), EXACT_SCRIPTS, 8.0))
    reference = engine.run(exact_gyms())
    return config, renderer, engine.stop_rule, engine.limits, reference


def same(a, b) -> None:
    assert a.prompt_ids == b.prompt_ids and a.response_ids == b.response_ids
    assert a.response_mask == b.response_mask and a.turn_spans == b.turn_spans
    assert max((abs(x - y) for x, y in zip(a.logprobs, b.logprobs, strict=True)), default=0.0) < 1e-4
    assert a.episode == b.episode


def test_lock_step_driver_equals_the_engine(tok, llama, setup):
    config, renderer, rule, limits, reference = setup
    server = ServerLike(llama, Forcer(renderer, exact_gyms(), EXACT_SCRIPTS, 8.0))
    trajs = asyncio.run(aplay_batch(exact_gyms(), server.generate_batch, renderer, rule, limits, policy="test"))
    assert [t.episode.termination for t in reference][0] == "solved"
    for a, b in zip(reference, trajs, strict=True):
        same(a, b)
    # one call per turn for all live episodes: 4, then fewer as episodes end
    assert server.batch_calls[0] == 4 and server.batch_calls == sorted(server.batch_calls, reverse=True)


def test_per_episode_driver_equals_the_engine(tok, llama, setup):
    config, renderer, rule, limits, reference = setup
    server = ServerLike(llama, Forcer(renderer, exact_gyms(), EXACT_SCRIPTS, 8.0))

    async def all_episodes():
        return await asyncio.gather(*(aplay_tokens(g, server.generate, renderer, rule, limits, policy="test")
                                      for g in exact_gyms()))

    for a, b in zip(reference, asyncio.run(all_episodes()), strict=True):
        same(a, b)
    assert server.calls == sum(len(t.turn_spans) for t in reference)


def test_bad_generators_are_refused_or_recorded(tok, llama, setup):
    _, renderer, rule, _, _ = setup
    limits = Limits(max_prompt_tokens=1152, max_response_tokens=400, max_new_tokens_per_turn=48)

    async def mismatched(ids, n):
        return [1, 2], [0.0]

    with pytest.raises(ValueError, match="2 tokens but 1 log-prob"):
        asyncio.run(aplay_tokens(probe("x"), mismatched, renderer, rule, limits))

    async def empty(ids, n):
        return [], []

    traj = asyncio.run(aplay_tokens(probe("x"), empty, renderer, rule, limits))
    assert traj.episode.termination == "no_tool_call" and traj.turn_spans == [(0, 0)]

    text = call("answer", "42")
    ids = renderer.encode(text)

    async def answers_then_rambles(ctx, n):  # the server did not stop at </tool_call>
        out = (ids + renderer.encode(" and more words"))[:n]
        return out, [-0.5] * len(out)

    traj = asyncio.run(aplay_tokens(probe("y"), answers_then_rambles, renderer, rule, limits))
    assert traj.episode.termination == "solved" and traj.response_ids == ids
    assert traj.episode.turns[0].stop_reason == "tool_call"
    long = Limits(max_prompt_tokens=5, max_response_tokens=400, max_new_tokens_per_turn=48)
    traj = asyncio.run(aplay_tokens(probe("z"), answers_then_rambles, renderer, rule, long))
    assert traj.episode.termination == "token_budget" and "max_prompt_tokens" in traj.episode.error


class FakeSamplingParams:
    def __init__(self, **kw) -> None:
        self.__dict__.update(kw)


class FakeLLM:
    """vLLM's ``LLM.generate`` output structure over `ServerLike` (greedy)."""

    def __init__(self, server: ServerLike) -> None:
        self.server = server
        self.params: list[FakeSamplingParams] = []

    def generate(self, prompts, sampling_params, use_tqdm=True):
        from types import SimpleNamespace as NS

        outs = []
        for p, sp in zip(prompts, sampling_params, strict=True):
            assert sp.logprobs == 0 and sp.n == 1
            self.params.append(sp)
            ids, lps = self.server._one(p["prompt_token_ids"], sp.max_tokens)
            logprobs = [{t: NS(logprob=lp), t + 1: NS(logprob=-99.0)} for t, lp in zip(ids, lps, strict=True)]
            outs.append(NS(outputs=[NS(token_ids=tuple(ids), logprobs=logprobs)]))
        return outs


def test_vllm_rollout_reads_vllms_outputs_like_the_engine(tok, llama, setup):
    from baorl.rollout.vllm import VLLMRollout

    config, renderer, _, _, reference = setup
    llm = FakeLLM(ServerLike(llama, Forcer(renderer, exact_gyms(), EXACT_SCRIPTS, 8.0)))
    rollout = VLLMRollout.from_llm(llm, tok, config, name="test", sampling_params_cls=FakeSamplingParams)
    for a, b in zip(reference, rollout.run(exact_gyms()), strict=True):
        same(a, b)
    assert rollout.stats["generated"] >= rollout.stats["kept"] > 0
    assert all(p.temperature == 0.0 and p.max_tokens <= config.max_new_tokens_per_turn for p in llm.params)
    assert len({p.seed for p in llm.params}) == len(llm.params)  # each request its own sampling stream
    with pytest.raises(ValueError, match="colocated"):
        VLLMRollout.from_trl(object(), tok, config, sampling_params_cls=FakeSamplingParams)


def test_trailing_generation_is_recorded_but_never_executed(tok, llama, setup):
    """`trailing_generation` (the official rollout's 16th generation): after the turn limit the policy
    generates once more; that turn is recorded with reward 0 and no choice, the gym is not stepped,
    and the over-thinking regulariser treats the episode as one that ran to its limit."""
    from baorl.gyms import make
    from baorl.rollout.episode import TRAILING_FEEDBACK
    from baorl.train.config import BAOSection
    from baorl.train.episodes import score_episode

    _, renderer, rule, _, _ = setup
    probe_ids = renderer.encode(call("action", "1 2 3 4"))

    async def probes(ctx, n):
        return probe_ids[:n], [-0.1] * min(n, len(probe_ids))

    played = {}
    for trailing in (False, True):
        limits = Limits(max_prompt_tokens=1152, max_response_tokens=2000, max_new_tokens_per_turn=96, max_turns=3,
                        trailing_generation=trailing)
        gym = make("function")
        traj = asyncio.run(aplay_tokens(gym, probes, renderer, rule, limits))
        played[trailing] = (traj, gym)
    plain, _ = played[False]
    traj, gym = played[True]
    assert plain.episode.termination == traj.episode.termination == "turn_limit"
    assert len(plain.episode.turns) == 3 and len(traj.episode.turns) == 4 and len(traj.turn_spans) == 4
    last = traj.episode.turns[-1]
    assert last.choice is None and last.reward == 0.0 and last.feedback == TRAILING_FEEDBACK
    assert traj.response_ids[:len(plain.response_ids)] == plain.response_ids  # the same three executed turns
    assert sum(traj.response_mask) == sum(plain.response_mask) + len(probe_ids)  # + the trailing turn's tokens
    scored = score_episode(traj, BAOSection(), max_turns=3)
    assert scored.shaped == [0.0] * 4 and scored.trained  # ran to its limit: no over-thinking penalty
