"""numina_kit.protocols.chat: Qwen3's `<tool_call>` protocol and fenced code inside a chat template.

Rendering is checked against transformers' `apply_chat_template` with Qwen3's real template text (a whole tool-calling
conversation, byte for byte); parsing against the edge cases a sampled model produces (two calls in one message, a
call cut off by the token limit, malformed JSON, an unknown tool, an answer without a call).
"""

import json

import pytest

from numina_kit.errors import InputError
from numina_kit.protocols import ProtocolConfig, make_protocol
from numina_kit.protocols.chat import PYTHON_TOOL, FencedChat, Qwen3ToolCalls
from numina_kit.testing import TOOL_PROBLEM, TOOL_TURNS


def call(code):
    return {"type": "function", "function": {"name": "python", "arguments": {"code": code}}}


def test_a_tool_calling_conversation_renders_as_qwen3s_own_template(qwen3_tokenizer):
    protocol = Qwen3ToolCalls(tokenizer=qwen3_tokenizer, instructions="Answer in \\boxed{}.")
    first, second, final = TOOL_TURNS["qwen3"]
    outputs = ["42", "43"]
    attempt = ""
    for turn_text, output in zip((first, second), outputs, strict=True):
        turn = protocol.parse(attempt, turn_text, "stop")
        attempt += turn_text + protocol.render_results(turn, [output])
    ours = protocol.render_example(TOOL_PROBLEM, attempt + final)
    messages = [
        {"role": "system", "content": "Answer in \\boxed{}."},
        {"role": "user", "content": TOOL_PROBLEM},
        {
            "role": "assistant",
            "reasoning_content": "Use python.",
            "content": "",
            "tool_calls": [call("x = 6 * 7\nprint(x)")],
        },
        {"role": "tool", "content": "42"},
        {"role": "assistant", "reasoning_content": "Add one.", "content": "", "tool_calls": [call("print(x + 1)")]},
        {"role": "tool", "content": "43"},
        {"role": "assistant", "reasoning_content": "Done.", "content": "The answer is $\\boxed{43}$."},
    ]
    theirs = qwen3_tokenizer.apply_chat_template(messages, tools=[PYTHON_TOOL], tokenize=False)
    assert ours == theirs
    # and the prompt alone is the template's generation prompt
    assert protocol.render_prompt(TOOL_PROBLEM) == qwen3_tokenizer.apply_chat_template(
        messages[:2], tools=[PYTHON_TOOL], tokenize=False, add_generation_prompt=True
    )


def test_two_calls_in_one_message_run_in_order_and_return_in_one_user_turn(qwen3_tokenizer):
    protocol = Qwen3ToolCalls(tokenizer=qwen3_tokenizer)
    text = (
        '<think>\nTwo things.\n</think>\n\n<tool_call>\n{"name": "python", "arguments": {"code": "print(1)"}}\n'
        '</tool_call>\n<tool_call>\n{"name": "python", "arguments": {"code": "print(2)"}}\n</tool_call>'
    )
    turn = protocol.parse("", text, "stop")
    assert [c.code for c in turn.calls] == ["print(1)", "print(2)"] and turn.final is None
    rendered = protocol.render_prompt("p") + text + protocol.render_results(turn, ["1", "2"])
    messages = [
        {"role": "user", "content": "p"},
        {
            "role": "assistant",
            "reasoning_content": "Two things.",
            "content": "",
            "tool_calls": [call("print(1)"), call("print(2)")],
        },
        {"role": "tool", "content": "1"},
        {"role": "tool", "content": "2"},
    ]
    assert rendered == qwen3_tokenizer.apply_chat_template(
        messages, tools=[PYTHON_TOOL], tokenize=False, add_generation_prompt=True
    )


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('<tool_call>\n{"name": "python", "arguments": {"code": "print(1)"', "not closed"),
        (
            '<tool_call>\n{"name": "python", "arguments": {"code": print(1)}}\n</tool_call>',
            "Could not read the tool call's JSON",
        ),
        ('<tool_call>\n{"name": "bash", "arguments": {"code": "ls"}}\n</tool_call>', "Unknown tool 'bash'"),
        ('<tool_call>\n{"name": "python", "arguments": {"source": "1"}}\n</tool_call>', '{"code": "<Python source>"}'),
    ],
)
def test_unreadable_calls_come_back_to_the_model_as_errors(qwen3_tokenizer, text, error):
    [tool_call] = Qwen3ToolCalls(tokenizer=qwen3_tokenizer).parse("", text, "stop").calls
    assert tool_call.code == "" and error in tool_call.error


def test_arguments_sent_as_a_json_string_are_read(qwen3_tokenizer):
    arguments = json.dumps({"code": "print(3)"})
    text = "<tool_call>\n" + json.dumps({"name": "python", "arguments": arguments}) + "\n</tool_call>"
    [tool_call] = Qwen3ToolCalls(tokenizer=qwen3_tokenizer).parse("", text, "stop").calls
    assert tool_call.code == "print(3)" and tool_call.error is None


def test_a_message_cut_off_by_the_token_limit_is_neither_call_nor_answer(qwen3_tokenizer):
    turn = Qwen3ToolCalls(tokenizer=qwen3_tokenizer).parse("", "<think>\nLet me compute \\boxed{1", "length")
    assert turn.cut_off and not turn.calls and turn.final is None


def test_an_answer_without_a_call_is_final_and_read_from_boxed_only(qwen3_tokenizer):
    protocol = Qwen3ToolCalls(tokenizer=qwen3_tokenizer)
    turn = protocol.parse("", "<think>\nthe answer is 7 maybe\n</think>\n\nIt is $\\boxed{123456}$.", "stop")
    assert turn.final.strip() == "It is $\\boxed{123456}$." and protocol.extract_answer(turn.final) == "123456"
    assert protocol.extract_answer("The answer is 7.") is None
    assert Qwen3ToolCalls(tokenizer=qwen3_tokenizer, boxed_only=False).extract_answer("The answer is 7.") == "7"


def test_fenced_chat_runs_the_last_block_inside_the_assistant_message(qwen3_tokenizer):
    protocol = FencedChat(tokenizer=qwen3_tokenizer)
    text = "Compute.\n```python\nprint(2 + 2)\n```\n```output\n"
    turn = protocol.parse("", text, "stop")
    assert [c.code.strip() for c in turn.calls] == ["print(2 + 2)"]
    assert protocol.render_results(turn, ["4"]).startswith("4")
    assert protocol.ran_code(text + protocol.render_results(turn, ["4"]))
    [bad] = protocol.parse("", "no code\n```output\n", "stop").calls
    assert bad.error and bad.code == ""
    final = protocol.parse("", "So $\\boxed{4}$.", "stop")
    assert final.final == "So $\\boxed{4}$." and protocol.extract_answer(final.final) == "4"


def test_chat_protocols_need_a_chat_template():
    with pytest.raises(InputError, match="has none"):
        make_protocol(ProtocolConfig(name="qwen3"), object())
    with pytest.raises(InputError, match="no tokenizer"):
        make_protocol(ProtocolConfig(name="chat-fenced"), None)


def test_a_message_cut_off_and_resumed_is_read_whole(qwen3_tokenizer):
    protocol = Qwen3ToolCalls(tokenizer=qwen3_tokenizer)
    first = TOOL_TURNS["qwen3"][0]
    history = first + protocol.render_results(protocol.parse("", first, "stop"), ["42"])
    cut = '<think>\nAdd one.\n</think>\n\n<tool_call>\n{"name": "python", "arguments": {"code": "print(x'
    rest = ' + 1)"}}\n</tool_call>'
    assert protocol.parse(history, cut, "length").cut_off
    [call] = protocol.parse(history + cut, rest, "stop").calls
    assert call.code == "print(x + 1)"
