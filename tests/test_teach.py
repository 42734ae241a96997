"""Teachers, `baorl teach` and the SFT export.

(The Function solver's correctness on every one of the 460 shared training tasks, and on the
embedded sets, is tested in test_function_solver.py; here it is used as a teacher.)
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from baorl.agents.base import Agent
from baorl.agents.function_solver import FunctionSolver
from baorl.agents.telepathy_questioner import TelepathyQuestioner
from baorl.cli.main import main
from baorl.gyms import load_tasks
from baorl.gyms.function import FunctionGym, FunctionTask
from baorl.gyms.parser import parse_action
from baorl.gyms.telepathy import TelepathyGym
from baorl.gyms.tool import INTERACT_TOOL
from baorl.records import Episode, Turn, read_episodes
from baorl.rollout.render import ChatRenderer
from baorl.runs.play import play_episode
from baorl.teach import check_episodes, make_teacher, parse_keep, read_sft_file, teach
from baorl.teach.export import (
    conversation_to_sharegpt,
    episode_to_conversation,
    validate_conversation,
    validate_sharegpt,
    write_dataset_info,
)
from baorl.teach.prompts import behaviour_instructions
from baorl.users.telepathy_offline import OfflineTelepathyUser


@pytest.fixture(scope="module")
def shared_file(userrl) -> str:
    return str(userrl / "function" / "functions_train.json")


class Capture(Agent):
    """Records what the wrapped agent saw and generated, turn by turn."""

    def __init__(self, inner: Agent) -> None:
        self.inner, self.name = inner, inner.name
        self.prompts: tuple[str, str] | None = None
        self.observations: list[str] = []
        self.outputs: list[Any] = []

    def start(self, system_prompt, task_prompt, info):
        self.prompts = (system_prompt, task_prompt)
        return self.inner.start(system_prompt, task_prompt, info)

    def respond(self, observation, state):
        out, state = self.inner.respond(observation, state)
        self.observations.append(observation)
        self.outputs.append(out)
        return out, state


# ---- teachers ------------------------------------------------------------------------------------------
def test_make_teacher_names_and_errors():
    assert make_teacher("scripted:telepathy-questioner").gyms == ("telepathy",)
    llm = make_teacher("openai:some-model", base_url="http://127.0.0.1:9/v1", temperature=0.5)
    assert (llm.kind, llm.gyms, llm.make_agent().temperature) == ("llm", None, 0.5)
    with pytest.raises(ValueError, match="unknown teacher"):
        make_teacher("gpt-4o")
    with pytest.raises(ValueError, match="takes only concise, deadline, probes"):
        make_teacher("function-solver", temperature=1.0)
    with pytest.raises(ValueError, match="takes no options"):
        make_teacher("telepathy-questioner", deadline=4)
    with pytest.raises(ValueError, match="deadline must be at least 2"):
        make_teacher("function-solver", deadline=1)
    scheduled = make_teacher("function-solver", deadline=4, probes=(1, 2), concise=True)
    agent = scheduled.make_agent()
    assert (agent.deadline, agent.probes, agent.concise) == (4, (1, 2), True)
    assert scheduled.options == {"deadline": 4, "probes": (1, 2), "concise": True}
    with pytest.raises(ValueError, match="teaches only function"):
        make_teacher("function-solver").check("telepathy")
    with pytest.raises(ValueError, match="embedded telepathy set"):
        make_teacher("telepathy-questioner").check("telepathy", data="entities.json")
    with pytest.raises(ValueError, match="max_retries"):
        make_teacher("openai:m", max_retries=-1)


def test_behaviour_instructions_name_the_checked_sections():
    for gym in ("function", "telepathy", "turtle", "intention", "unknown"):
        text = behaviour_instructions(gym, max_turns=9)
        assert "Memory:" in text and "Hypotheses:" in text and "Plan:" in text and "of 9" in text
        assert "Never repeat a query" in text


def test_parse_keep():
    ok = Episode(gym="function", task_id="t", termination="solved", score=1.0, success=True)
    assert parse_keep("success")(ok) and parse_keep("score>=1")(ok) and not parse_keep("score>1")(ok)
    for bad in ("best", "score<1", "score>x"):
        with pytest.raises(ValueError, match="--keep"):
            parse_keep(bad)


# ---- export: the rendered conversation is what the rollout engine renders ------------------------------
@pytest.fixture(scope="module")
def tokenizer():
    from baorl.models import load_tokenizer

    return load_tokenizer("embedded")


def played(gym, agent):
    cap = Capture(agent)
    return play_episode(gym, cap), cap


def engine_text(renderer: ChatRenderer, cap: Capture) -> str:
    """prompt + a_1 + END TOOL(o_1) GEN + a_2 + ... + a_n + END: the engine's text for these turns."""
    text = renderer.prompt_text(*cap.prompts)
    for k, out in enumerate(cap.outputs):
        if k:
            text += renderer.observation_text(cap.observations[k], policy_ended_turn=False)
        text += out
    return text + renderer.end_text


@pytest.mark.parametrize("template", ["chatml-tools", "qwen3"])
def test_export_renders_exactly_as_the_engine(shared_file, tokenizer, template):
    renderer = ChatRenderer(tokenizer, template)
    tasks = load_tasks("function", shared_file)[:6]
    cases = [played(FunctionGym(t), FunctionSolver()) for t in tasks]
    # observations with the reward suffix, and a Telepathy game (offline user)
    cases.append(played(FunctionGym(tasks[0], reward_in_obs=True), FunctionSolver()))
    tele = next(t for t in TelepathyGym.embedded_tasks("all") if t.title == "Violin")
    cases.append(played(TelepathyGym(tele, user=OfflineTelepathyUser()), TelepathyQuestioner()))
    for ep, cap in cases:
        assert ep.success and len(ep.turns) >= 2
        # prompts re-created from the gym (these records carry none) are the ones the agent saw
        conv = episode_to_conversation(ep, data=shared_file if ep.gym == "function" else None,
                                       reward_in_obs="Reward:" in cap.observations[1])
        assert validate_conversation(conv) is None
        assert [m["role"] for m in conv["messages"]] == ["system", "user"] + ["assistant", "tool"] * (
            len(ep.turns) - 1) + ["assistant"]
        rendered = tokenizer.apply_chat_template(conv["messages"], tools=conv["tools"],
                                                 chat_template=renderer.template, tokenize=False)
        assert rendered == engine_text(renderer, cap)


def test_export_ends_a_finished_episode_with_the_stop_as_plain_text():
    gave_up = play_episode(FunctionGym(FunctionTask(id="x", rule="a + b + c + d + 1", test_case=[1, 2, 3, 4],
                                                    expected_result=11)), FunctionSolver())
    assert gave_up.termination == "finish" and gave_up.turns[-1].choice is None
    conv = episode_to_conversation(gave_up, system_prompt="S", task_prompt="U")
    assistant = [m for m in conv["messages"] if m["role"] == "assistant"]
    assert len(assistant) == len(gave_up.turns)
    assert "tool_calls" not in assistant[-1] and assistant[-1]["content"].endswith("</think>\n[finish]")
    assert "no rule of my grammar fits" in assistant[-1]["content"]
    assert conv["messages"][-2]["role"] == "tool" and conv["messages"][-2]["content"] == gave_up.turns[-2].feedback
    assert validate_conversation(conv) is None and conv["meta"]["success"] is False
    sharegpt = conversation_to_sharegpt(conv)["conversations"]
    assert sharegpt[-1] == {"from": "gpt", "value": assistant[-1]["content"]}


@pytest.mark.parametrize("template", ["chatml-tools", "qwen3"])
def test_export_of_a_scheduled_stop_renders_exactly_as_the_engine(shared_file, tokenizer, template):
    renderer = ChatRenderer(tokenizer, template)
    stopped = 0
    for task in load_tasks("function", shared_file)[:12]:
        ep, cap = played(FunctionGym(task), FunctionSolver(deadline=4, probes=(1, 2), concise=True))
        if ep.termination != "finish":
            continue
        stopped += 1
        conv = episode_to_conversation(ep, data=shared_file)
        assert validate_conversation(conv) is None
        rendered = tokenizer.apply_chat_template(conv["messages"], tools=conv["tools"],
                                                 chat_template=renderer.template, tokenize=False)
        assert rendered == engine_text(renderer, cap)
        # what the engine parses out of that last message is the stop itself
        assert parse_action(conv["messages"][-1]["content"]).choice == "finish"
    assert stopped >= 2


def test_export_stops_before_a_turn_without_a_call():
    first_bad = Episode.from_turns(turns=[Turn(choice=None, think="x")], gym="function", task_id="x",
                                   termination="no_tool_call")
    assert episode_to_conversation(first_bad, system_prompt="S", task_prompt="U") is None
    bare = Episode.from_turns(turns=[Turn(choice="answer", content="1")], gym="function", task_id="x",
                              termination="turn_limit")
    assert episode_to_conversation(bare, system_prompt="S", task_prompt="U")["messages"][2]["content"] == ""


# ---- read_sft_file -------------------------------------------------------------------------------------
GOOD = {"messages": [
    {"role": "system", "content": "S"}, {"role": "user", "content": "U"},
    {"role": "assistant", "content": "<think>t</think>", "tool_calls": [
        {"type": "function", "function": {"name": "interact_with_env", "arguments": '{"choice": "search", '
                                                                                   '"content": "test"}'}}]},
    {"role": "tool", "content": "The test case is ..."},
    {"role": "assistant", "content": "", "tool_calls": [
        {"type": "function", "function": {"name": "interact_with_env", "arguments": '{"choice": "answer", '
                                                                                   '"content": "3"}'}}]},
], "tools": [INTERACT_TOOL], "meta": {"gym": "function"}}


def _broken(edit: Callable[[dict], Any]) -> dict:
    conv = json.loads(json.dumps(GOOD))
    edit(conv)
    return conv


BROKEN = {
    "missing messages": (lambda c: c.pop("messages"), 'missing or empty "messages"'),
    "unknown role": (lambda c: c["messages"][1].update(role="human"), "role must be one of"),
    "no user turn": (lambda c: c["messages"].pop(1), "must follow a user or tool"),
    "tool without call": (lambda c: c["messages"][2].pop("tool_calls"), "without a preceding tool call"),
    "arguments not JSON": (lambda c: c["messages"][2]["tool_calls"][0]["function"].update(arguments="{choice"),
                           "arguments are not JSON"),
    "arguments an object": (lambda c: c["messages"][4]["tool_calls"][0]["function"].update(arguments={}),
                            "JSON string"),
    "unknown tool": (lambda c: c["messages"][4]["tool_calls"][0]["function"].update(name="other"),
                     "not among the conversation's tools"),
    "ends with tool": (lambda c: c["messages"].pop(), "last message must be the assistant's"),
    "content not text": (lambda c: c["messages"][1].update(content=3), "content must be a string"),
}


def test_read_sft_file_accepts_good_lines(tmp_path):
    path = tmp_path / "ok.sft.jsonl"
    path.write_text(json.dumps(GOOD) + "\n\n" + json.dumps(GOOD) + "\n")
    assert read_sft_file(path) == [GOOD, GOOD]


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_read_sft_file_names_the_broken_line(tmp_path, case):
    edit, why = BROKEN[case]
    path = tmp_path / "bad.sft.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + json.dumps(_broken(edit)) + "\n")
    with pytest.raises(ValueError, match=re.escape(f"{path}:2: ") + ".*" + re.escape(why)):
        read_sft_file(path)


def test_read_sft_file_bad_json_empty_and_missing(tmp_path):
    path = tmp_path / "x.sft.jsonl"
    path.write_text(json.dumps(GOOD) + "\n" + json.dumps(GOOD) + "\n" + '{"messages": [\n')
    with pytest.raises(ValueError, match=re.escape(f"{path}:3: not valid JSON")):
        read_sft_file(path)
    path.write_text("\n")
    with pytest.raises(ValueError, match="no conversations"):
        read_sft_file(path)
    with pytest.raises(FileNotFoundError):
        read_sft_file(tmp_path / "missing.jsonl")


def test_dataset_info_merges_and_rejects_garbage(tmp_path):
    (tmp_path / "dataset_info.json").write_text('{"other": {"file_name": "o.json"}}')
    info = json.loads(write_dataset_info(tmp_path / "d.sharegpt.jsonl", "d").read_text())
    assert set(info) == {"other", "d"} and info["d"]["formatting"] == "sharegpt"
    assert info["d"]["columns"] == {"messages": "conversations", "system": "system", "tools": "tools"}
    (tmp_path / "dataset_info.json").write_text("{oops")
    with pytest.raises(ValueError, match="dataset_info.json: not valid JSON"):
        write_dataset_info(tmp_path / "d.sharegpt.jsonl", "d")


# ---- baorl teach with the programmatic teachers --------------------------------------------------------
def test_cli_teach_function_end_to_end(tmp_path, shared_file):
    out = tmp_path / "teach" / "function.jsonl"
    args = ["teach", "--gym", "function", "--teacher", "function-solver", "--n", "5", "--out", str(out),
            "--data", shared_file]
    assert main(args) == 0
    eps = read_episodes(out)
    assert [e.task_id for e in eps] == [t.id for t in load_tasks("function", shared_file)[:5]]
    assert all(e.success and e.user_actions == 1 and e.policy == "scripted:function-solver" for e in eps)
    convs = read_sft_file(tmp_path / "teach" / "function.sft.jsonl")
    assert len(convs) == 5
    for ep, conv in zip(eps, convs, strict=True):
        # the records carry the prompts; the conversation uses them and every call and think
        assert conv["messages"][0]["content"] == ep.system_prompt and conv["messages"][1]["content"] == ep.task_prompt
        calls = [m for m in conv["messages"] if m["role"] == "assistant"]
        assert [json.loads(m["tool_calls"][0]["function"]["arguments"]) for m in calls] == [
            {"choice": t.choice, "content": t.content} for t in ep.turns]
        assert [m["content"] for m in calls] == [f"<think>{t.think}</think>" for t in ep.turns]
        assert conv["meta"] == {"gym": "function", "task_id": ep.task_id, "policy": ep.policy, "score": 1.0,
                                "success": True}
    # ShareGPT twin and its registration
    rows = [json.loads(x) for x in (tmp_path / "teach" / "function.sharegpt.jsonl").read_text().splitlines()]
    assert len(rows) == 5 and all(validate_sharegpt(r) is None for r in rows)
    assert rows[0] == conversation_to_sharegpt(convs[0])
    info = json.loads((tmp_path / "teach" / "dataset_info.json").read_text())
    assert info["function"]["file_name"] == "function.sharegpt.jsonl"
    # the solver's turns carry all three sections, never repeat a probe, never answer twice in a row
    r = check_episodes(eps)
    assert r.all_three == r.turns and r.repeats == 0 and r.answer_after_answer == 0

    # the SFT file loads with datasets, messages intact (Arrow adds absent keys as None)
    import datasets

    ds = datasets.load_dataset("json", data_files=str(tmp_path / "teach" / "function.sft.jsonl"),
                               split="train", cache_dir=str(tmp_path / "hf-cache"))
    assert len(ds) == 5
    for row, conv in zip(ds, convs, strict=True):
        assert [{k: v for k, v in m.items() if v is not None} for m in row["messages"]] == conv["messages"]
        assert row["tools"] == conv["tools"]

    # rerun: nothing new; --n 7 plays only the two new tasks; export-only re-filters
    assert main(args) == 0 and len(read_episodes(out)) == 5
    assert main(args[:6] + ["7"] + args[7:]) == 0 and len(read_episodes(out)) == 7
    assert len(read_sft_file(tmp_path / "teach" / "function.sft.jsonl")) == 7
    assert main(["teach", "--gym", "function", "--out", str(out), "--export-only", "--keep", "score>1"]) == 0
    assert (tmp_path / "teach" / "function.sft.jsonl").read_text() == ""


@pytest.mark.parametrize("argv,msg", [
    (["--teacher", "telepathy-questioner"], "teaches only telepathy"),
    (["--teacher", "function-solver", "--keep", "best"], "--keep"),
    (["--teacher", "function-solver", "--base-url", "http://x"], "openai: teachers only"),
    (["--teacher", "telepathy-questioner", "--deadline", "4"], "function-solver teacher only"),
    (["--teacher", "function-solver", "--deadline", "1"], "deadline must be at least 2"),
    ([], "--teacher is required"),
])
def test_cli_teach_errors(tmp_path, capsys, argv, msg):
    rc = main(["teach", "--gym", "function", "--out", str(tmp_path / "o.jsonl"), *argv])
    assert rc == 2 and msg in capsys.readouterr().err.replace("\n", "")
    assert not (tmp_path / "o.jsonl").exists()


@pytest.mark.parametrize("probes,msg", [("3-1", "0 <= LO <= HI"), ("two", "expected LO-HI")])
def test_cli_teach_rejects_a_bad_probe_range(tmp_path, capsys, probes, msg):
    with pytest.raises(SystemExit) as e:
        main(["teach", "--gym", "function", "--out", str(tmp_path / "o.jsonl"), "--teacher", "function-solver",
              "--probes", probes])
    assert e.value.code == 2 and msg in capsys.readouterr().err
    assert not (tmp_path / "o.jsonl").exists()


def test_teach_telepathy_questioner_on_the_embedded_set(tmp_path):
    s = teach(gym="telepathy", teacher="telepathy-questioner", out=tmp_path / "tele.jsonl", n=6, split="train")
    assert (s.todo, len(s.episodes), s.failed_attempts, s.lost) == (6, 6, 0, [])
    assert s.kept == sum(e.success for e in s.episodes) >= 5
    convs = read_sft_file(tmp_path / "tele.sft.jsonl")
    assert all(c["meta"]["gym"] == "telepathy" for c in convs)
    with pytest.raises(ValueError, match="embedded telepathy set"):
        teach(gym="telepathy", teacher="telepathy-questioner", out=tmp_path / "x.jsonl", data="entities.json")


# ---- the LLM teacher against a local OpenAI-compatible server -------------------------------------------
THINK1 = "Memory: nothing observed yet.\nHypotheses: any rule.\nPlan: turn 1 of 15; look up the test case."


class FakeTeacherServer:
    """Chat completions that play the Function gym by script, keyed by the task's test case:

    (1, 2, 3, 4): answers 10 (right for a + b + c + d); (2, 2, 2, 2): HTTP 500 on turn 2;
    (3, 3, 3, 3): a tool call whose arguments are not JSON.
    """

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (stdlib name)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                with fake.lock:
                    fake.bodies.append(body)
                status, payload = fake.reply(body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, args=(0.02,), daemon=True).start()

    @staticmethod
    def message(content: str | None, arguments: str) -> tuple[int, dict[str, Any]]:
        call = {"id": "call_1", "type": "function", "function": {"name": "interact_with_env", "arguments": arguments}}
        msg = {"role": "assistant", "content": content, "tool_calls": [call]}
        return 200, {"id": "x", "object": "chat.completion", "created": 0, "model": "teacher",
                     "choices": [{"index": 0, "message": msg, "finish_reason": "tool_calls"}],
                     "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}

    def reply(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        tools = [m["content"] for m in body["messages"] if m["role"] == "tool"]
        if not tools:
            return self.message(f"<think>{THINK1}</think>", json.dumps({"choice": "search", "content": "test"}))
        case = tuple(int(x) for x in re.findall(r"[abcd] = (-?\d+)", tools[0]))
        if case == (1, 2, 3, 4):  # no think tags: the whole text is the reasoning
            return self.message("Memory: test case (1, 2, 3, 4).\nHypotheses: a + b + c + d.\nPlan: answer 10.",
                                json.dumps({"choice": "answer", "content": "10"}))
        if case == (2, 2, 2, 2):
            return 500, {"error": {"message": "scripted failure", "type": "server_error"}}
        return self.message("<think>Plan: answer</think>", '{"choice": "answer", "content": ')

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_teacher() -> Iterator[FakeTeacherServer]:
    server = FakeTeacherServer()
    yield server
    server.close()


def _function_file(path: Path) -> str:
    rows = [{"id": "t-good", "rule": "a + b + c + d", "test_case": [1, 2, 3, 4], "expected_result": 10},
            {"id": "t-fail", "rule": "a * b * c * d", "test_case": [2, 2, 2, 2], "expected_result": 16},
            {"id": "t-bad", "rule": "a - b - c - d", "test_case": [3, 3, 3, 3], "expected_result": -6}]
    path.write_text(json.dumps(rows))
    return str(path)


def test_llm_teacher_failures_cost_only_their_episode(tmp_path, fake_teacher):
    data = _function_file(tmp_path / "functions.json")
    out = tmp_path / "llm.jsonl"
    opts = {"base_url": fake_teacher.base_url, "api_key": "sk-test", "max_retries": 0, "backoff": 0.0,
            "timeout": 10.0}
    s = teach(gym="function", teacher="openai:teacher", out=out, data=data, retries=1, concurrency=3,
              teacher_options=opts)
    assert (s.todo, s.failed_attempts, s.lost, s.kept) == (3, 4, ["t-fail"], 1)

    eps = {e.task_id: e for e in read_episodes(out)}
    assert set(eps) == {"t-good", "t-bad"}
    good, bad = eps["t-good"], eps["t-bad"]
    assert good.success and good.policy == "openai:teacher" and good.attempt == 0
    assert [t.think for t in good.turns] == [THINK1, "Memory: test case (1, 2, 3, 4).\nHypotheses: a + b + c + d."
                                                     "\nPlan: answer 10."]
    assert bad.termination == "no_tool_call" and bad.attempt == 1  # the last of its two attempts

    failures = [json.loads(x) for x in (tmp_path / "llm.failures.jsonl").read_text().splitlines()]
    assert sorted((f["task_id"], f["attempt"], f["kind"]) for f in failures) == [
        ("t-bad", 0, "no_tool_call"), ("t-bad", 1, "no_tool_call"),
        ("t-fail", 0, "agent_error"), ("t-fail", 1, "agent_error")]
    assert all("sk-test" not in f["error"] for f in failures)
    assert "not valid JSON" in next(f for f in failures if f["kind"] == "no_tool_call")["error"]

    # the teacher was prompted with the behaviour instructions; the SFT data has the gym's prompt only
    system_sent = fake_teacher.bodies[0]["messages"][0]["content"]
    assert system_sent.startswith(good.system_prompt) and "Hypotheses:" in system_sent[len(good.system_prompt):]
    (conv,) = read_sft_file(tmp_path / "llm.sft.jsonl")
    assert conv["messages"][0]["content"] == good.system_prompt and "# How to think" not in good.system_prompt
    assert conv["messages"][2]["content"] == f"<think>{THINK1}</think>"
    assert conv["messages"][3]["content"] == good.turns[0].feedback

    # a rerun plays only the lost task again
    s2 = teach(gym="function", teacher="openai:teacher", out=out, data=data, retries=0, teacher_options=opts)
    assert (s2.skipped, s2.todo, s2.lost, s2.records, s2.kept) == (2, 1, ["t-fail"], 2, 1)
