import json

import pytest

from baorl.gyms import INTERACT_TOOL, parse_action


def call(choice, content):
    return {"name": "interact_with_env", "arguments": {"choice": choice, "content": content}}


def test_tool_schema_is_openai_function_json():
    fn = INTERACT_TOOL["function"]
    assert INTERACT_TOOL["type"] == "function" and fn["name"] == "interact_with_env"
    assert fn["parameters"]["required"] == ["choice", "content"]
    assert fn["parameters"]["properties"]["choice"]["enum"] == ["action", "search", "answer"]
    json.dumps(INTERACT_TOOL)


@pytest.mark.parametrize("output", [
    {"type": "function", "function": {"name": "interact_with_env", "arguments": json.dumps({"choice": "answer", "content": "42"})}},
    {"name": "interact_with_env", "arguments": {"choice": "answer", "content": "42"}},
    [{"id": "c1", "type": "function", "function": {"name": "interact_with_env", "arguments": '{"choice": "answer", "content": "42"}'}}],
    "<tool_call>" + json.dumps(call("answer", "42")) + "</tool_call>",
    "<think>hmm</think>\n<tool_call>\n" + json.dumps(call("answer", "42")) + "\n</tool_call>",
    "<tool_call>" + json.dumps(call("answer", "42")),  # stopped before the closing tag
    "<tool_call>" + json.dumps(call("answer", "42")) + " trailing</tool_call>",
    "[answer] 42",
    "  [ANSWER]   42 ",
    {"name": "interact_with_env", "arguments": {"choice": "Answer", "content": 42}},
])
def test_every_format_parses_to_the_same_call(output):
    p = parse_action(output)
    assert (p.choice, p.content, p.error) == ("answer", "42", None)
    assert p.as_text == "[answer] 42"


def test_think_is_separated_and_never_a_call():
    p = parse_action("<think>maybe [answer] 7</think>[action] 1 2 3 4")
    assert (p.choice, p.content, p.think) == ("action", "1 2 3 4", "maybe [answer] 7")
    assert parse_action("<think>[answer] 7</think>").choice is None


def test_finish():
    assert parse_action("[finish]").choice == "finish"


@pytest.mark.parametrize("output,needle", [
    ("just words", "no tool call"),
    ("<tool_call>{not json}</tool_call>", "not valid JSON"),
    ('<tool_call>{"name": "other_tool", "arguments": {}}</tool_call>', "unknown tool"),
    ('<tool_call>{"name": "interact_with_env", "arguments": {"choice": "dance", "content": "x"}}</tool_call>', "choice must be"),
    ({"name": "interact_with_env", "arguments": "{broken"}, "not valid JSON"),
    ({"name": "interact_with_env", "arguments": "[1, 2]"}, "not a JSON object"),
    ("[dance] now", "unknown choice"),
    ([], "empty"),
    (3.5, "cannot parse"),
])
def test_malformed_calls_name_the_problem(output, needle):
    p = parse_action(output)
    assert p.choice is None and needle in p.error


def test_escaped_quotes_and_braces_inside_strings_with_trailing_text():
    p = parse_action('<tool_call>{"name": "interact_with_env", "arguments": {"choice": "answer", '
                     '"content": "say \\"hi\\" }"}} trailing</tool_call>')
    assert (p.choice, p.content) == ("answer", 'say "hi" }')
