"""The token-exact batched rollout engine: exact ids, masks, log-probs, budgets, terminations, batching.

A tiny random model never writes a tool call by chance, so the positive paths force scripted
outputs with a logits processor: it adds `bias` to the logit of the script's next token, chosen
from the row's context alone (which turn it is, how far into the turn), so a fresh forward pass
over the recorded sequence can apply the same processor and must reproduce the recorded
log-probabilities. With bias 8 the forced token is the greedy choice yet keeps a log-probability
that depends on the model's own logits (around -3), so the comparison is informative.
"""

from __future__ import annotations

import asyncio
import json
from typing import ClassVar

import pytest
import torch
from transformers import Qwen3Config, Qwen3ForCausalLM

from baorl.agents.base import tool_call_text
from baorl.gyms import load_tasks, make
from baorl.gyms.base import Gym, Outcome, Task
from baorl.models import chat_template
from baorl.records import Episode
from baorl.rollout.engine import EngineConfig, RolloutEngine, Trajectory
from baorl.rollout.render import ChatRenderer, TemplateError
from baorl.users.base import SimulatorError

torch.set_num_threads(2)


# ---- a tiny gym whose tasks say how they behave ---------------------------------------------------
class ProbeTask(Task):
    answer: str = "42"
    fail: bool = False       # the simulator fails on `action`
    delay: float = 0.0       # seconds each step waits (I/O)


class ProbeGym(Gym):
    """Test gym: `action` echoes, `answer` is judged against the task's answer."""

    name: ClassVar[str] = "probe"
    version: ClassVar[int] = 0
    task_model: ClassVar[type[Task]] = ProbeTask
    default_max_turns: ClassVar[int] = 6

    def system_prompt(self) -> str:
        return "You probe a test environment through the tool."

    def task_prompt(self) -> str:
        return f"Task {self.task.id}: find the number."

    async def handle(self, choice: str, content: str) -> Outcome:
        await asyncio.sleep(self.task.delay)
        if choice == "answer":
            ok = content.strip() == self.task.answer
            return Outcome("Correct." if ok else "Wrong, try again.", 1.0 if ok else 0.0, solved=ok)
        if self.task.fail:
            raise SimulatorError("simulated outage")
        return Outcome(f"Observed: {content} -> {len(content)}.")


def call(choice: str, content: str, think: str = "ok") -> str:
    return tool_call_text(choice, content, think)


class Forcer:
    """Logits processor: add `bias` to the script's next token, keyed by the row's prompt and turn."""

    def __init__(self, renderer: ChatRenderer, gyms: list[Gym], scripts: list[list[str]], bias: float) -> None:
        self.gen = renderer.encode("<|im_start|>assistant\n")
        self.bias = bias
        self.table = []
        for gym, script in zip(gyms, scripts, strict=True):
            obs, info = gym.reset(seed=0)
            prompt = renderer.encode(renderer.prompt_text(info["system_prompt"], obs))
            self.table.append((prompt, [renderer.encode(t) for t in script]))

    def target(self, ids: list[int]) -> int | None:
        prompt, turns = next((p, t) for p, t in self.table if ids[: len(p)] == p)
        g = len(self.gen)
        ends = [j for j in range(len(prompt), len(ids) + 1) if ids[j - g:j] == self.gen]
        turn, k = len(ends), len(ids) - ends[-1]
        if turn <= len(turns) and k < len(turns[turn - 1]):
            return turns[turn - 1][k]
        return None

    def __call__(self, contexts: list[list[int]], logits: torch.Tensor) -> torch.Tensor:
        logits = logits.clone()
        for r, ids in enumerate(contexts):
            t = self.target(ids)
            if t is not None:
                logits[r, t] += self.bias
        return logits


# ---- fixtures -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def qwen3(tok):
    torch.manual_seed(1)
    config = Qwen3Config(
        vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, max_position_embeddings=4096, tie_word_embeddings=True,
        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
    )
    return Qwen3ForCausalLM(config).eval()


def probe(id_: str, **kw) -> ProbeGym:
    return ProbeGym(ProbeTask(id=id_, **kw))


def run(model, tok, gyms, scripts, bias=8.0, **cfg):
    cfg.setdefault("temperature", 0.0)
    cfg.setdefault("max_new_tokens_per_turn", 80)
    config = EngineConfig(**cfg)
    renderer = ChatRenderer(tok, config.chat_template)
    forcer = Forcer(renderer, gyms, scripts, bias)
    engine = RolloutEngine(model, tok, config, name="test", logits_processor=forcer)
    return engine, forcer, engine.run(gyms)


# the scripted episodes of the exactness tests: multi-turn, then one free (unforced) turn
EXACT_SCRIPTS = [
    [call("action", "7"), call("action", "a longer probe"), call("answer", "42")],  # solved on turn 3
    [call("search", "x", think="short")],                                            # then free text
    [call("action", "1"), call("answer", "9")],                                      # then free text
    [call("search", "test"), call("action", "1 2 3 4")],                             # Function gym
]


def exact_gyms():
    function = make("function", task=load_tasks("function")[0])
    return [probe("a"), probe("b"), probe("c"), function]


def segments(mask: list[int]) -> list[tuple[int, int, int]]:
    """Runs of equal mask values: (value, start, end)."""
    out, s = [], 0
    for i in range(1, len(mask) + 1):
        if i == len(mask) or mask[i] != mask[s]:
            out.append((mask[s], s, i))
            s = i
    return out


@pytest.mark.parametrize("template,model_name", [("chatml-tools", "llama"), ("qwen3", "qwen3")])
def test_token_exact(tok, request, template, model_name):
    model = request.getfixturevalue(model_name)
    gyms = exact_gyms()
    # batch 3: the probe episodes share a long prompt prefix (kept once in the cache); the Function
    # episode joins when the first episode ends
    engine, forcer, trajs = run(model, tok, gyms, EXACT_SCRIPTS, chat_template=template, batch_size=3,
                                max_new_tokens_per_turn=60)
    assert engine.stats["prefix_max"] > 100
    r = engine.renderer
    assert trajs[0].episode.termination == "solved" and trajs[0].episode.score == 1.0
    assert [t.episode.termination for t in trajs[1:]] == ["no_tool_call"] * 3
    assert [len(t.episode.turns) for t in trajs] == [3, 2, 3, 3]
    for traj, gym in zip(trajs, gyms, strict=True):
        ep = traj.episode
        full = traj.prompt_ids + traj.response_ids
        mask, spans = traj.response_mask, traj.turn_spans
        task_prompt, info = gym.reset(seed=0)
        msgs = [{"role": "system", "content": info["system_prompt"]}, {"role": "user", "content": task_prompt}]
        # prompt: exactly the template's tokens
        assert traj.prompt_ids == r.encode(r.render(msgs, add_generation_prompt=True))
        # masks and spans: mask 1 exactly on the spans, which partition the sampled tokens
        ones = [(s, e) for v, s, e in segments(mask) if v == 1]
        assert ones == spans and len(spans) == len(ep.turns)
        assert [t.completion_tokens for t in ep.turns] == [e - s for s, e in spans]
        assert [t.prompt_tokens for t in ep.turns] == [len(traj.prompt_ids) + s for s, _ in spans]
        assert all(lp == 0.0 for lp, m in zip(traj.logprobs, mask, strict=True) if m == 0)
        assert len(traj.logprobs) == len(mask) == len(traj.response_ids)
        # (a) + (b): the sequence decodes to the rendered conversation; each observation segment is
        # exactly the tokenisation of the template's text between two assistant messages
        for k, (s, e) in enumerate(spans):
            policy = traj.response_ids[s:e]
            ended = policy[-1] == r.eot_id
            content = r.decode(policy[:-1] if ended else policy)
            msgs.append({"role": "assistant", "content": content})
            if k + 1 < len(spans):
                msgs.append({"role": "tool", "content": ep.turns[k].feedback})
                rendered = r.render(msgs, add_generation_prompt=True)
                upto = r.decode(full[: len(traj.prompt_ids) + e])
                assert rendered.startswith(upto)
                assert traj.response_ids[e:spans[k + 1][0]] == r.encode(rendered[len(upto):])
        expected = r.render(msgs[:-1], add_generation_prompt=True) + r.decode(traj.response_ids[spans[-1][0]:])
        assert r.decode(full) == expected
        # (c): every sampled token is the token the sampler chose for exactly that context (greedy:
        # the argmax of the processed logits) and is fed back as is, never re-tokenised
        with torch.no_grad():
            logits = model(torch.tensor([full])).logits[0].float()
        p0 = len(traj.prompt_ids)
        for j in (j for j, m in enumerate(mask) if m):
            ctx = full[: p0 + j]
            processed = forcer([ctx], logits[p0 + j - 1][None])[0]
            assert int(processed.argmax()) == full[p0 + j]
            # (d): a fresh forward pass scores the recorded token as recorded
            assert abs(float(processed.log_softmax(-1)[full[p0 + j]]) - traj.logprobs[j]) < 1e-4
    # the last turns ran free (unforced) up to the per-turn cap
    assert [t.turn_lengths[-1] for t in trajs[1:]] == [60] * 3
    assert all(t.episode.turns[-1].stop_reason == "length" for t in trajs[1:])


def test_terminations_and_bad_input(tok, llama):
    gyms = [
        probe("solve"), probe("limit"), probe("plain"), probe("json"), probe("think"),
        probe("sim", fail=True, delay=0.05), probe("finish"), probe("slow", delay=0.1),
    ]
    scripts = [
        [call("action", "3"), call("answer", "42")],
        [call("action", "1"), call("action", "2"), call("action", "3")],
        ["I would rather just talk.<|im_end|>"],
        ['<tool_call>\n{"name": "interact_with_env", "arguments": {choice: answer}}\n</tool_call>'],
        ["<think>" + " and then" * 200],
        [call("action", "1")],
        ["[finish]<|im_end|>"],
        [call("search", "a"), call("answer", "7"), call("answer", "42")],
    ]
    config = EngineConfig(temperature=0.0, max_turns=3, batch_size=8, max_response_tokens=260,
                          max_new_tokens_per_turn=300)
    forcer = Forcer(ChatRenderer(tok, "auto"), gyms, scripts, bias=30.0)
    done: list[str] = []
    engine = RolloutEngine(llama, tok, config, logits_processor=forcer)
    trajs = engine.run(gyms, on_episode_done=lambda t: done.append(t.episode.task_id))
    assert sorted(done) == sorted(g.task.id for g in gyms)  # each episode reported once, when it ended
    eps = {t.episode.task_id: t.episode for t in trajs}
    assert {k: e.termination for k, e in eps.items()} == {
        "solve": "solved", "limit": "turn_limit", "plain": "no_tool_call", "json": "no_tool_call",
        "think": "token_budget", "sim": "simulator_error", "finish": "finish", "slow": "solved",
    }
    assert [t.choice for t in eps["solve"].turns] == ["action", "answer"] and eps["solve"].success
    assert [t.reward for t in eps["slow"].turns] == [0.0, 0.0, 1.0] and eps["slow"].user_actions == 2
    assert len(eps["limit"].turns) == 3 and eps["limit"].score == 0.0
    assert eps["json"].turns[0].choice is None and "JSON" in eps["json"].turns[0].feedback
    assert eps["plain"].turns[0].choice is None and eps["plain"].turns[0].feedback == "no tool call found"
    think = next(t for t in trajs if t.episode.task_id == "think")
    assert len(think.response_ids) == 260 and think.episode.turns[0].stop_reason == "budget"
    assert think.episode.turns[0].think.startswith("and then")
    for t in trajs:  # every record is complete and valid JSON
        assert Episode.model_validate_json(t.episode.model_dump_json()) == t.episode
        assert len(t.turn_spans) == len(t.episode.turns) == len(t.turn_rewards) == len(t.turn_choices)
        assert len(t.response_ids) <= 260


class WatchedGym(ProbeGym):
    """Records how many decoding steps the engine made while this gym's step waited on I/O."""

    engine: ClassVar[RolloutEngine | None] = None
    seen: ClassVar[list[tuple[float, float]]] = []

    async def handle(self, choice: str, content: str) -> Outcome:
        before = self.engine.stats["decode_steps"]
        out = await super().handle(choice, content)
        WatchedGym.seen.append((before, self.engine.stats["decode_steps"]))
        return out


def test_gym_steps_overlap_generation(tok, llama):
    """A row's gym step waits on I/O while the other rows keep generating."""
    gyms = [WatchedGym(ProbeTask(id="early", delay=0.5)), probe("late")]
    scripts = [[call("answer", "42")], [call("answer", "42", think="x" * 300)]]
    config = EngineConfig(temperature=0.0, batch_size=2, max_new_tokens_per_turn=400)
    engine = RolloutEngine(llama, tok, config, logits_processor=Forcer(ChatRenderer(tok, "auto"), gyms, scripts, 30.0))
    WatchedGym.engine, WatchedGym.seen = engine, []
    trajs = engine.run(gyms)
    assert [t.episode.termination for t in trajs] == ["solved", "solved"]
    (before, after), = WatchedGym.seen
    assert after > before  # decoding went on during the step


def test_budget_counts_observations(tok, llama):
    """Observation tokens count against the budget; an observation that does not fit ends the episode."""
    script = [[call("action", "x" * 40)] * 6]
    _, _, (traj,) = run(llama, tok, [probe("b")], script, max_response_tokens=150)
    ep = traj.episode
    assert ep.termination == "token_budget" and len(ep.turns) >= 2
    assert traj.response_mask[-1] == 1  # ended right after the policy's last token
    assert len(traj.response_ids) <= 150 and traj.response_mask.count(0) > 0


def test_prompt_too_long_and_step_timeout(tok, llama):
    gyms = [probe("long"), probe("slow", delay=5.0), probe("ok")]
    scripts = [[call("answer", "42")], [call("action", "1")], [call("answer", "42")]]
    _, _, trajs = run(llama, tok, gyms[:1], scripts[:1], max_prompt_tokens=10)
    assert trajs[0].episode.termination == "token_budget" and trajs[0].episode.turns == []
    assert "max_prompt_tokens" in trajs[0].episode.error and trajs[0].response_ids == []
    _, _, trajs = run(llama, tok, gyms[1:], scripts[1:], step_timeout_s=0.2)
    assert [t.episode.termination for t in trajs] == ["simulator_error", "solved"]


def test_batching_is_invisible(tok, llama):
    """Greedy results are the same at batch size 1, 3 (queued episodes join) and 6."""
    scripts = [
        [call("action", "1"), call("answer", "42")], [call("action", "a much longer probe text here")],
        ["<|im_end|>"], [call("search", "x"), call("action", "y"), call("answer", "1")],
        [call("answer", "42")], [call("action", "2"), call("action", "3")],
    ]
    results = []
    for bs in (1, 3, 6):
        gyms = [probe(f"t{i}") for i in range(6)]
        engine, _, trajs = run(llama, tok, gyms, scripts, batch_size=bs, max_new_tokens_per_turn=60, max_turns=4)
        results.append(trajs)
        if bs > 1:  # rows that stopped early left the decoding batch
            assert engine.stats["parked"] > 0
        assert engine.stats["generated"] == sum(t.response_mask.count(1) for t in trajs)
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            assert a.prompt_ids == b.prompt_ids and a.response_ids == b.response_ids
            assert a.response_mask == b.response_mask and a.turn_spans == b.turn_spans
            assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs, strict=True)) < 1e-4
            assert a.episode == b.episode


def test_sampling_is_reproducible(tok, llama):
    def once(bs, **kw):
        gyms = [probe(f"s{i}") for i in range(4)]
        scripts = [[call("action", "1")]] * 4
        _, _, trajs = run(llama, tok, gyms, scripts, bias=30.0, temperature=1.0, top_k=50, top_p=0.9,
                          batch_size=bs, max_new_tokens_per_turn=60, seed=3, **kw)
        return [t.response_ids for t in trajs]

    a = once(4)
    assert a == once(4) == once(1)  # same seed: same tokens, whatever the batch size
    assert len({tuple(x) for x in a}) == 4  # each episode has its own random stream
    engine = RolloutEngine(llama, tok, EngineConfig(temperature=1.0, max_new_tokens_per_turn=8, seed=3))
    first = engine.run([probe("z")])[0].response_ids
    assert engine.run([probe("z")])[0].response_ids != first  # a second call draws new samples


def test_memory_cap_limits_live_episodes_without_changing_them(tok, llama):
    """`max_kv_gib` admits episodes only while their full budgets fit; results do not change."""
    scripts = [[call("action", str(i)), call("answer", "42")] for i in range(5)]
    out = {}
    for cap in (None, 1e-9):
        gyms = [probe(f"m{i}") for i in range(5)]
        engine, _, trajs = run(llama, tok, gyms, scripts, batch_size=5, max_kv_gib=cap, max_response_tokens=300)
        out[cap] = (engine.stats["max_live"], trajs)
    assert out[None][0] == 5 and out[1e-9][0] == 1  # a cap below one episode still runs one at a time
    for a, b in zip(out[None][1], out[1e-9][1], strict=True):
        assert a.response_ids == b.response_ids and a.episode == b.episode
    # the cap is counted on full budgets: room for exactly two episodes -> at most two live
    engine = RolloutEngine(llama, tok, EngineConfig(max_kv_gib=None))
    prompt = len(engine.renderer.encode(engine.renderer.prompt_text(probe("x").system_prompt(), "Task m0: find the number.")))
    two = 2 * 2 * (prompt + 300) * engine.kv_bytes_per_token / 2**30
    gyms = [probe(f"m{i}") for i in range(5)]
    engine, _, _ = run(llama, tok, gyms, scripts, batch_size=5, max_kv_gib=two * 1.01, max_response_tokens=300,
                       kv_admission="budget")
    assert engine.stats["max_live"] == 2 and engine.stats["preempted"] == 0
    assert RolloutEngine(llama, tok, EngineConfig()).kv_cap_bytes > 2**28  # auto: a share of this machine's RAM


def test_turn_admission_preempts_and_recomputes_without_changing_episodes(tok, llama):
    """`kv_admission: turn` counts a live episode as its tokens plus its next turn: under a cap that the
    first turns of all five fit but later turns do not, all five start, the newest are preempted when
    the cache grows, rejoin with their tokens prefilled again, and every episode is what it is uncapped."""
    scripts = [[call("action", str(i)), call("action", "a longer probe " * 3), call("answer", "42")]
               for i in range(5)]
    kw = dict(batch_size=5, max_response_tokens=600, max_new_tokens_per_turn=60)
    free, _, ref = run(llama, tok, [probe(f"p{i}") for i in range(5)], scripts, max_kv_gib=None, **kw)
    assert free.stats["preempted"] == 0 and free.stats["max_live"] == 5
    prompt = min(len(t.prompt_ids) for t in ref)
    first_turns = 2 * 5 * (max(len(t.prompt_ids) for t in ref) + 60) * free.kv_bytes_per_token / 2**30
    engine, _, trajs = run(llama, tok, [probe(f"p{i}") for i in range(5)], scripts, max_kv_gib=first_turns * 1.01,
                           **kw)
    st = engine.stats
    assert st["max_live"] == 5
    strict, _, _ = run(llama, tok, [probe(f"p{i}") for i in range(5)], scripts, max_kv_gib=first_turns * 1.01,
                       kv_admission="budget", **kw)
    assert strict.stats["max_live"] == 1  # counted on full budgets, the same cap admits one at a time
    assert st["preempted"] > 0 and st["recomputed"] > st["preempted"] * prompt
    assert st["prefilled"] > free.stats["prefilled"]  # the preempted rows' tokens were computed again
    for a, b in zip(ref, trajs, strict=True):
        assert a.response_ids == b.response_ids and a.episode == b.episode and a.turn_spans == b.turn_spans
        assert a.response_mask == b.response_mask
        assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs, strict=True)) < 1e-4
    assert [t.episode.termination for t in trajs] == ["solved"] * 5


def test_memory_cap_counts_every_row_at_the_longest_rows_length(tok, llama):
    """The aligned batch pads every row to the longest: one long episode among short ones costs as
    much as if all were long, under either admission rule."""
    from types import SimpleNamespace

    def row(prompt: int, response: int) -> SimpleNamespace:
        return SimpleNamespace(ids=[0] * (prompt + response), prompt_len=prompt, response_len=response)

    per_token = RolloutEngine(llama, tok, EngineConfig(max_kv_gib=None)).kv_bytes_per_token

    def fits(rows: list, tokens: int, admission: str) -> bool:
        cfg = EngineConfig(max_kv_gib=2 * tokens * per_token / 2**30, max_new_tokens_per_turn=60,
                           max_response_tokens=7000, kv_admission=admission)
        return RolloutEngine(llama, tok, cfg)._fits(rows)

    short, long_ = row(700, 0), row(700, 5300)
    for admission, need_short, need_long in (("turn", 760, 6060), ("budget", 7700, 7700)):
        rows = [short] * 3 + [long_]
        assert fits(rows, 4 * need_long, admission) and not fits(rows, 4 * need_long - 1, admission)
        assert fits([short] * 3, 3 * need_short, admission) and not fits([short] * 3, 3 * need_short - 1, admission)
    assert not fits([short] * 3 + [long_], 3 * 760 + 6060, "turn")  # the sum of the rows' own needs is not enough
    # near the end of its budget, a turn can add only what is left of it: 700 + 6,970 + 30 tokens
    assert fits([row(700, 6970)], 7700, "turn") and not fits([row(700, 6970)], 7699, "turn")


def test_auto_memory_cap_is_measured_at_each_rollout(tok, llama, monkeypatch):
    """On a GPU, auto is half of the free memory plus what torch's allocator holds unused, measured
    when each rollout starts (a trainer's optimiser states appear after the first one)."""
    from baorl.rollout import engine as engine_mod

    gib = 2**30
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (10 * gib, 80 * gib))
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: 6 * gib)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device=None: 2 * gib)
    assert engine_mod._kv_cap_bytes("auto", torch.device("cuda")) == 7 * gib  # (10 + 6 - 2) / 2
    assert engine_mod._kv_cap_bytes(1.5, torch.device("cuda")) == int(1.5 * gib)
    assert engine_mod._kv_cap_bytes(None, torch.device("cuda")) is None

    caps = iter([3 * gib, 2 * gib, 1 * gib])
    monkeypatch.setattr(engine_mod, "_kv_cap_bytes", lambda cap, device: next(caps))
    engine = RolloutEngine(llama, tok, EngineConfig(max_new_tokens_per_turn=4))
    assert engine.kv_cap_bytes == 3 * gib
    for expected in (2 * gib, 1 * gib):
        engine.run([probe("cap")])
        assert engine.kv_cap_bytes == expected


def test_trajectory_record_roundtrip(tok, llama):
    _, _, (traj,) = run(llama, tok, [probe("r")], [[call("action", "1"), call("answer", "42")]])
    rec = json.loads(json.dumps(traj.to_record()))
    back = Trajectory.from_record(rec)
    assert back == traj and back.turn_lengths == [e - s for s, e in traj.turn_spans]
    assert Episode.model_validate(rec).termination == "solved"  # the same line is a valid episode record


def test_hf_policy_plays_the_embedded_model():
    from baorl.rollout.hf import HFPolicy

    with pytest.raises(ValueError, match="hf:embedded"):
        HFPolicy("hf:")
    policy = HFPolicy("hf:embedded", EngineConfig(temperature=0.0, max_new_tokens_per_turn=6))
    (traj,) = policy.rollout([make("function", task=load_tasks("function")[0])])
    assert traj.episode.policy == "hf:embedded" and traj.episode.termination == "no_tool_call"
    assert 1 <= len(traj.response_ids) <= 6 and traj.response_mask == [1] * len(traj.response_ids)


def test_template_without_prefix_property_is_refused(tok):
    bad = chat_template(tok, "chatml-tools").replace(
        "{% if add_generation_prompt %}<|im_start|>assistant\n",
        "{% if add_generation_prompt %}<|im_start|>assistant turn {{ messages | length }}\n")
    with pytest.raises(TemplateError, match="prefix property|verbatim"):
        ChatRenderer(tok, bad)


@pytest.mark.parametrize("q,masked", [(1, True), (1, False), (5, False), (5, True)])
def test_prefix_attention_matches_sdpa(q, masked):
    """Shared-prefix attention equals plain attention over [prefix, row columns] (GQA, masks, causal)."""
    from types import SimpleNamespace

    from baorl.rollout.attention import PrefixKV, prefix_attention

    g = torch.Generator().manual_seed(0)
    b, h, hkv, d, p, s = 3, 6, 2, 8, 7, 9
    query = torch.randn(b, h, q, d, generator=g) * 3
    key, value = torch.randn(b, hkv, s, d, generator=g) * 3, torch.randn(b, hkv, s, d, generator=g)
    kp, vp = torch.randn(hkv, p, d, generator=g) * 3, torch.randn(hkv, p, d, generator=g)
    causal = torch.ones(q, s, dtype=torch.bool).tril(s - q)
    mask = causal.expand(b, 1, q, s).clone()
    if masked:
        mask[0, :, :, :3] = False  # a row with gaps
        mask[1, :, :, : s - q] = False  # a row with nothing before its queries
    module = SimpleNamespace(layer_idx=0, num_key_value_groups=h // hkv)
    out, _ = prefix_attention(module, query, key, value, mask if masked else None, scaling=0.3,
                              baorl_prefix=PrefixKV([kp], [vp], p))
    full_k = torch.cat([kp.expand(b, -1, -1, -1), key], 2).repeat_interleave(h // hkv, 1)
    full_v = torch.cat([vp.expand(b, -1, -1, -1), value], 2).repeat_interleave(h // hkv, 1)
    full_mask = torch.cat([torch.ones(b, 1, q, p, dtype=torch.bool), mask], -1)
    ref = torch.nn.functional.scaled_dot_product_attention(query, full_k, full_v, attn_mask=full_mask, scale=0.3)
    assert out.shape == (b, q, h, d)
    torch.testing.assert_close(out, ref.transpose(1, 2), atol=1e-5, rtol=1e-5)


@pytest.mark.timeout(60)
def test_an_error_in_the_forward_thread_surfaces_instead_of_hanging(llama, tok) -> None:
    def broken(contexts, logits):
        return next(iter([]))  # StopIteration cannot cross an asyncio future; the engine converts it

    engine = RolloutEngine(llama, tok, EngineConfig(temperature=0.0, max_new_tokens_per_turn=4),
                           logits_processor=broken)
    with pytest.raises(RuntimeError, match="StopIteration escaped"):
        engine.run([probe("p0")])


def test_packed_weights_change_speed_not_episodes(tok, llama):
    """oneDNN-packed linear layers (the CPU fp32 default) play the same greedy episodes as torch's
    own kernel, and the model's layers are back to normal afterwards (training sees no copies)."""
    from baorl.rollout.engine import _PackedLinears

    assert _PackedLinears.usable(llama, torch.device("cpu"))  # the CPU build has the oneDNN ops: packing runs
    scripts = [[call("action", "1"), call("answer", "42")], [call("search", "x"), call("action", "y")], ["<|im_end|>"]]
    results = []
    for pack in (False, True):
        gyms = [probe(f"p{i}") for i in range(3)]
        _, _, trajs = run(llama, tok, gyms, scripts, batch_size=3, max_new_tokens_per_turn=60, max_turns=3,
                          pack_weights=pack)
        results.append(trajs)
        assert not any("forward" in m.__dict__ for m in llama.modules())
    for a, b in zip(*results, strict=True):
        assert a.response_ids == b.response_ids and a.response_mask == b.response_mask
        assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs, strict=True)) < 1e-4
