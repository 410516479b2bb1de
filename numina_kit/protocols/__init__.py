"""Tool-call protocols: the one place where prompt formats live, for inference and training alike.

| name | class | models | tool calls | interpreter |
|---|---|---|---|---|
| `tora` (default) | `tora.ToRA` | NuminaMath-7B-TIR, ToRA | ```python fences, stop at ```output | fresh per block |
| `harmony` | `harmony.Harmony` | gpt-oss | `to=python` messages ending at `<|call|>` | persistent per attempt |
| `qwen3` | `chat.Qwen3ToolCalls` | Qwen3, Qwen2.5, QwQ | `<tool_call>` JSON in the chat template | fresh (configurable) |
| `chat-fenced` | `chat.FencedChat` | chat models that write ```python fences | fences inside the chat template | fresh (configurable) |

`ProtocolConfig` names one (or "auto": detected from the tokenizer's chat template by `detect_protocol`) with its
options; `make_protocol(config, tokenizer)` builds it. Adding a family: subclass `base.ToolProtocol` and add it to
`PROTOCOLS`.
"""

from dataclasses import dataclass, fields
from typing import Any

from numina_kit.errors import InputError
from numina_kit.protocols.base import ToolCall, ToolProtocol, Turn
from numina_kit.protocols.chat import FencedChat, Qwen3ToolCalls
from numina_kit.protocols.harmony import Harmony, has_harmony_template
from numina_kit.protocols.tora import ToRA


__all__ = [
    "PROTOCOLS",
    "ProtocolConfig",
    "ToolCall",
    "ToolProtocol",
    "Turn",
    "detect_protocol",
    "make_protocol",
    "tokenizer_of",
]

PROTOCOLS: dict[str, type[ToolProtocol]] = {cls.name: cls for cls in (ToRA, Harmony, Qwen3ToolCalls, FencedChat)}


@dataclass(frozen=True)
class ProtocolConfig:
    """Which protocol a run speaks and its options; YAML `protocol: harmony` or `protocol: {name: harmony, ...}`.

    Options left None take the protocol's default: `stateful` (the python tool keeps variables across the calls of
    an attempt; it sets `ExecutorConfig.stateful`), `boxed_only` (answers only from `\\boxed{}`). `instructions` is
    the system/developer message (not for `tora`, whose format has none); `reasoning_effort` is Harmony's.
    """

    name: str = "tora"
    instructions: str | None = None
    reasoning_effort: str | None = None
    boxed_only: bool | None = None
    stateful: bool | None = None

    def __post_init__(self) -> None:
        if self.name != "auto" and self.name not in PROTOCOLS:
            raise InputError(f"unknown protocol {self.name!r}: use auto or one of {', '.join(PROTOCOLS)}")
        if self.name == "tora" and self.instructions:
            raise InputError("protocol 'tora' has no system message: leave instructions unset")
        if self.reasoning_effort is not None and self.name not in ("harmony", "auto"):
            raise InputError(f"reasoning_effort is a Harmony option, not one of protocol {self.name!r}")

    @classmethod
    def from_value(cls, value: "str | dict | ProtocolConfig | None", *, source: str = "config") -> "ProtocolConfig":
        """A config from YAML's value: a name, or a mapping of this dataclass's fields."""
        if value is None:
            return cls()
        if isinstance(value, cls):
            return value
        if isinstance(value, str):
            return cls(name=value)
        if not isinstance(value, dict):
            raise InputError(f"{source}: protocol must be a name or a mapping, got {value!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(value) - known)
        if unknown:
            raise InputError(
                f"{source}: unknown protocol key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})"
            )
        return cls(**value)

    @property
    def stateful_default(self) -> bool | None:
        """Whether this protocol's python tool persists variables; None while the name is "auto"."""
        if self.stateful is not None:
            return self.stateful
        return None if self.name == "auto" else PROTOCOLS[self.name].stateful


def detect_protocol(tokenizer: Any) -> str:
    """The protocol a tokenizer's chat template speaks: "harmony" (gpt-oss), "qwen3" (`<tool_call>` in the
    template), else "tora" (Numina's template, or none)."""
    template = getattr(tokenizer, "chat_template", None)
    if not isinstance(template, str):
        return "tora"
    if has_harmony_template(tokenizer):
        return "harmony"
    if "<tool_call>" in template:
        return "qwen3"
    return "tora"


def make_protocol(config: ProtocolConfig, tokenizer: Any = None) -> ToolProtocol:
    """Build the protocol `config` names for a model with `tokenizer` (needed by the chat-template protocols)."""
    name = detect_protocol(tokenizer) if config.name == "auto" else config.name
    options: dict[str, Any] = {}
    if config.boxed_only is not None:
        options["boxed_only"] = config.boxed_only
    if config.stateful is not None:
        options["stateful"] = config.stateful
    if name == "tora":
        eos = getattr(tokenizer, "eos_token", None)
        return ToRA(eos_token=eos if isinstance(eos, str) else "", **options)
    if config.instructions:
        options["instructions"] = config.instructions
    if name == "harmony":
        if config.reasoning_effort:
            options["reasoning_effort"] = config.reasoning_effort
        return Harmony(tokenizer=tokenizer, **options)
    if tokenizer is None:
        raise InputError(f"protocol {name!r} renders with the model's chat template: the generator has no tokenizer")
    return PROTOCOLS[name](tokenizer=tokenizer, **options)


def tokenizer_of(generator: Any) -> Any:
    """The tokenizer behind a generator (`.tokenizer`, or that of the batch generator it wraps); None if none."""
    for candidate in (generator, getattr(generator, "generator", None)):
        tokenizer = getattr(candidate, "tokenizer", None)
        if tokenizer is not None:
            return tokenizer
    return None
