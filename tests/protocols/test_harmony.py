"""numina_kit.protocols.harmony (gpt-oss): the prompt from the real chat template and from `openai-harmony`, which
must agree; parsing completions as `openai-harmony` parses them; tool results rendered as it renders tool messages;
and the turns a sampled model produces (a call, a call cut off by the token limit, JSON arguments, an unknown
tool, a final answer, an analysis message with nothing after it).

The `openai-harmony` comparisons skip when its encoding cannot load (the package, `pip install numina_kit[harmony]`,
or its vocabulary file is missing).
"""

import datetime

import pytest

from numina_kit.errors import InputError
from numina_kit.protocols import ProtocolConfig, detect_protocol, make_protocol
from numina_kit.protocols.harmony import Harmony, load_encoding, parse_messages
from numina_kit.testing import TOOL_PROBLEM, TOOL_TURNS


DATE = "2026-11-28"
INSTRUCTIONS = "The answer is an integer between 0 and 99999. Put it in \\boxed{}."


@pytest.fixture(scope="module")
def harmony():
    encoding = load_encoding()
    if encoding is None:
        pytest.skip("openai-harmony's encoding does not load here (pip install numina_kit[harmony])")
    return encoding


def test_auto_detects_harmony_from_the_gpt_oss_template(gpt_oss_tokenizer):
    assert detect_protocol(gpt_oss_tokenizer) == "harmony"
    protocol = make_protocol(ProtocolConfig(name="auto", reasoning_effort="high"), gpt_oss_tokenizer)
    assert isinstance(protocol, Harmony) and protocol.stateful and not protocol.skip_special_tokens


@pytest.mark.parametrize("effort", ["low", "high"])
@pytest.mark.parametrize("instructions", [None, INSTRUCTIONS])
def test_openai_harmony_and_the_chat_template_render_the_same_prompt(harmony, gpt_oss_tokenizer, effort, instructions):
    options = dict(instructions=instructions, reasoning_effort=effort, tokenizer=gpt_oss_tokenizer, date=DATE)
    ours = Harmony(encoding=harmony, **options).render_prompt(TOOL_PROBLEM)
    template = Harmony(encoding=None, **options).render_prompt(TOOL_PROBLEM)
    assert f"Reasoning: {effort}" in ours and f"Current date: {DATE}" in ours and "## python" in ours
    assert ours.endswith(f"<|start|>user<|message|>{TOOL_PROBLEM}<|end|><|start|>assistant")
    if instructions:
        # the one difference: gpt-oss's template ends the developer message with a blank line
        assert template == ours.replace(instructions + "<|end|>", instructions + "\n\n<|end|>")
    else:
        assert template == ours


def test_the_template_prompt_is_transformers_apply_chat_template(gpt_oss_tokenizer):
    protocol = Harmony(instructions=INSTRUCTIONS, tokenizer=gpt_oss_tokenizer, encoding=None, date=DATE)
    messages = [{"role": "developer", "content": INSTRUCTIONS}, {"role": "user", "content": TOOL_PROBLEM}]
    expected = gpt_oss_tokenizer.apply_chat_template(
        messages,
        tokenize=False,
        add_generation_prompt=True,
        builtin_tools=["python"],
        reasoning_effort="high",
    )
    today = datetime.date.today().isoformat()
    assert (
        protocol.render_prompt(TOOL_PROBLEM) == expected.replace(f"Current date: {today}", f"Current date: {DATE}")
        and protocol.renderer == "chat template"
    )


COMPLETIONS = [
    TOOL_TURNS["harmony"][0],
    TOOL_TURNS["harmony"][2],
    "<|channel|>analysis<|message|>Think.<|end|><|start|>assistant to=python<|channel|>analysis code<|message|>1+1<|call|>",
    '<|channel|>commentary to=functions.python <|constrain|>json<|message|>{"code": "print(5)"}<|call|>',
    "<|channel|>analysis<|message|>Only thinking.<|end|>",
]


@pytest.mark.parametrize("text", COMPLETIONS)
def test_parsing_agrees_with_openai_harmony(harmony, text):
    import openai_harmony as oh

    tokens = harmony.encode(text, allowed_special="all")
    theirs = harmony.parse_messages_from_completion_tokens(tokens, oh.Role.ASSISTANT)
    ours = parse_messages(text)
    assert len(ours) == len(theirs)
    for mine, message in zip(ours, theirs, strict=True):
        assert mine.author == message.author.role.value
        assert mine.channel == message.channel
        assert mine.recipient == message.recipient
        assert (mine.content_type or None) == (message.content_type or None)
        assert mine.content == "".join(part.text for part in message.content)


def test_a_tool_result_renders_as_openai_harmony_renders_the_tool_message(harmony):
    import openai_harmony as oh

    protocol = Harmony(encoding=harmony, date=DATE)
    turn = protocol.parse("", TOOL_TURNS["harmony"][0], "stop")
    ours = protocol.render_results(turn, ["42\n"])
    message = (
        oh.Message.from_author_and_content(oh.Author.new(oh.Role.TOOL, "python"), "42\n")
        .with_recipient("assistant")
        .with_channel("analysis")
    )
    rendered = harmony.decode_utf8(harmony.render(message))
    assert ours == rendered + "<|start|>assistant"


def test_a_call_to_python_is_one_tool_call(gpt_oss_tokenizer):
    protocol = Harmony(tokenizer=gpt_oss_tokenizer, encoding=None)
    assert protocol.stop == ("<|call|>", "<|return|>")
    [call] = protocol.parse("", TOOL_TURNS["harmony"][0], "stop").calls
    assert (call.code, call.tool, call.channel, call.error) == ("x = 6 * 7\nprint(x)", "python", "analysis", None)
    [json_call] = protocol.parse("", COMPLETIONS[3], "stop").calls
    assert (json_call.code, json_call.tool, json_call.channel) == ("print(5)", "functions.python", "commentary")
    result = protocol.render_results(protocol.parse("", COMPLETIONS[3], "stop"), ["5"])
    assert result.startswith("<|start|>functions.python to=assistant<|channel|>commentary<|message|>5<|end|>")


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("<|channel|>analysis to=browser.search code<|message|>q<|call|>", "Unknown tool 'browser.search'"),
        ("<|channel|>commentary to=python <|constrain|>json<|message|>{code: 1}<|call|>", "Could not read"),
    ],
)
def test_unreadable_calls_come_back_as_errors(gpt_oss_tokenizer, text, error):
    [call] = Harmony(tokenizer=gpt_oss_tokenizer, encoding=None).parse("", text, "stop").calls
    assert call.code == "" and error in call.error


def test_final_answers_cut_offs_and_silence(gpt_oss_tokenizer):
    protocol = Harmony(tokenizer=gpt_oss_tokenizer, encoding=None)
    final = protocol.parse("", TOOL_TURNS["harmony"][2], "stop")
    assert final.final == "The answer is $\\boxed{43}$." and protocol.extract_answer(final.final) == "43"
    assert protocol.extract_answer("The answer is 43.") is None  # boxed only
    cut = protocol.parse("", "<|channel|>analysis to=python code<|message|>x = 1\nfor i in", "length")
    assert cut.cut_off and not cut.calls and cut.final is None
    assert protocol.parse("", COMPLETIONS[4], "stop") == protocol.parse("", COMPLETIONS[4], "stop").__class__()


def test_harmony_without_template_or_encoding_is_a_clear_error():
    with pytest.raises(InputError, match="openai-harmony"):
        Harmony(encoding=None, tokenizer=None)
    with pytest.raises(InputError, match="reasoning_effort"):
        Harmony(encoding=None, reasoning_effort="max")


def test_a_turn_cut_off_by_the_token_limit_is_read_whole_when_resumed(gpt_oss_tokenizer):
    protocol = Harmony(tokenizer=gpt_oss_tokenizer, encoding=None)
    first = TOOL_TURNS["harmony"][0]
    history = first + protocol.render_results(protocol.parse("", first, "stop"), ["42"])
    cut = "<|channel|>analysis to=python code<|message|>print(x"
    assert protocol.parse(history, cut, "length").cut_off
    [call] = protocol.parse(history + cut, " + 1)<|call|>", "stop").calls
    assert call.code == "print(x + 1)"
    assert protocol.parse(history + cut + " + 1)<|call|>", "", "stop") is not None
