"""Chat-template protocols: the prompt is the model's own chat template (`tokenizer.apply_chat_template`), and
tool calls are read per template family.

- `Qwen3ToolCalls` ("qwen3"): the `<tool_call>` JSON format of Qwen3's template (Hermes-style, shared by Qwen2.5
  and QwQ). The python tool is declared through `apply_chat_template(..., tools=[PYTHON_TOOL])`; the model writes
  `<tool_call>\\n{"name": "python", "arguments": {"code": ...}}\\n</tool_call>` (several in one message run in
  order) and ends its message; each result goes back inside the user turn `<tool_response>` blocks the template
  renders for `tool` messages, then a new assistant turn opens.
- `FencedChat` ("chat-fenced"): models that write ```python fences inside a chat template (DeepSeek-R1 distills
  prompted for code, OpenMath-Nemotron's TIR mode): the ToRA fences inside the assistant message.

Generation ends at the template's end-of-message token (the model's EOS, left out of the text), which the protocol
writes back before the tool results so that the attempt equals the template's rendering of the same conversation.
"""

import json
import re
from typing import Any

from numina_kit.errors import InputError
from numina_kit.protocols.base import ToolCall, ToolProtocol, Turn, current_turn
from numina_kit.protocols.tora import FencedCode


PYTHON_TOOL = {
    "type": "function",
    "function": {
        "name": "python",
        "description": (
            "Run Python code and return what it prints (the value of a last bare expression is printed too). "
            "math, numpy as np and sympy as sp are imported."
        ),
        "parameters": {
            "type": "object",
            "properties": {"code": {"type": "string", "description": "The Python code to run."}},
            "required": ["code"],
        },
    },
}


class ChatProtocol(ToolProtocol):
    """A protocol whose prompt is the model's chat template: an optional system message (`instructions`), the
    problem as the user message, the generation prompt. Subclasses say how tool calls look."""

    tools: tuple[dict, ...] = ()  # declared to the template through `tools=`

    def __init__(
        self, *, tokenizer: Any, instructions: str | None = None, boxed_only: bool = True, stateful: bool | None = None
    ) -> None:
        if not isinstance(getattr(tokenizer, "chat_template", None), str):
            raise InputError(f"protocol {self.name!r} renders with the model's chat template; this tokenizer has none")
        self.tokenizer, self.instructions, self.boxed_only = tokenizer, instructions or None, boxed_only
        if stateful is not None:
            self.stateful = stateful
        eos = getattr(tokenizer, "eos_token", None)
        self.eos_token = eos if isinstance(eos, str) else ""

    def render_prompt(self, problem: str) -> str:
        messages = [{"role": "user", "content": problem}]
        if self.instructions:
            messages.insert(0, {"role": "system", "content": self.instructions})
        tools = {"tools": list(self.tools)} if self.tools else {}
        return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **tools)

    @property
    def end_of_turn(self) -> str:
        return self.eos_token


IM_END = "<|im_end|>"
_TOOL_CALL = re.compile(r"<tool_call>(.*?)(</tool_call>|$)", re.DOTALL)
_THINK_END = "</think>"
_ASSISTANT = "<|im_start|>assistant\n"


class Qwen3ToolCalls(ChatProtocol):
    """Qwen3's template: `<tool_call>` JSON calls of the `python` function, results as `<tool_response>` blocks."""

    name = "qwen3"
    tools = (PYTHON_TOOL,)

    @property
    def stop(self) -> tuple[str, ...]:
        return ()  # the message ends at <|im_end|>, the model's EOS: every call of the message is in the text

    def parse(self, history: str, text: str, finish_reason: str) -> Turn:
        if finish_reason == "length":
            return Turn(cut_off=True)
        text = current_turn(history, IM_END, _ASSISTANT) + text
        answer = text.split(_THINK_END)[-1] if _THINK_END in text else text
        calls = tuple(_read_call(body, closed) for body, closed in _TOOL_CALL.findall(answer))
        if calls:
            return Turn(calls=calls)
        return Turn(final=answer)

    def render_results(self, turn: Turn, outputs: list[str]) -> str:
        responses = "".join(f"\n<tool_response>\n{output}\n</tool_response>" for output in outputs)
        return f"{IM_END}\n<|im_start|>user{responses}{IM_END}\n<|im_start|>assistant\n"

    @property
    def end_of_turn(self) -> str:
        return IM_END + "\n"


def _read_call(body: str, closed: str) -> ToolCall:
    """One `<tool_call>` block as a call of `python`, or the reason it cannot run."""
    if not closed:
        return ToolCall("", error="The tool call was not closed with </tool_call>.")
    try:
        call = json.loads(body)
    except ValueError as error:
        return ToolCall("", error=f"Could not read the tool call's JSON: {error}")
    if not isinstance(call, dict) or call.get("name") != "python":
        name = call.get("name") if isinstance(call, dict) else None
        return ToolCall("", error=f"Unknown tool {name!r}: the only tool is python.")
    arguments = call.get("arguments")
    if isinstance(arguments, str):  # some models send the arguments as a JSON string
        try:
            arguments = json.loads(arguments)
        except ValueError:
            arguments = {"code": arguments}
    code = arguments.get("code") if isinstance(arguments, dict) else None
    if not isinstance(code, str):
        return ToolCall("", error='The python tool takes {"code": "<Python source>"}.')
    return ToolCall(code)


class FencedChat(FencedCode, ChatProtocol):
    """```python fences inside a chat template: stop at the output fence, run the last block, append its output in
    the same assistant message (ToRA's fences); the message ends at the model's EOS."""

    name = "chat-fenced"
    missing_block = "No closed ```python block before the output fence."
