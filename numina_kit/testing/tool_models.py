"""Tiny tool-calling models of real families (gpt-oss, Qwen3), trained in-process to speak their protocol."""

from pathlib import Path


# ---- Tiny tool-calling models of real families (gpt-oss, Qwen3), trained in-process to speak their protocol -------

CHAT_TEMPLATES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "chat_templates"
TOOL_PROBLEM = "Let x be 6 times 7. What is x + 1?"
# What the tiny models learn to write, turn by turn: two python calls, the second using the first's variable (only a
# persistent interpreter prints 43), then the answer. Between the turns come the protocol's rendered tool results.
TOOL_TURNS = {
    "harmony": [
        "<|channel|>analysis<|message|>Use python.<|end|><|start|>assistant<|channel|>analysis to=python code"
        "<|message|>x = 6 * 7\nprint(x)<|call|>",
        "<|channel|>analysis to=python code<|message|>print(x + 1)<|call|>",
        "<|channel|>final<|message|>The answer is $\\boxed{43}$.<|return|>",
    ],
    "qwen3": [
        '<think>\nUse python.\n</think>\n\n<tool_call>\n{"name": "python", "arguments": {"code": "x = 6 * 7\\nprint(x)"}}'
        "\n</tool_call>",
        '<think>\nAdd one.\n</think>\n\n<tool_call>\n{"name": "python", "arguments": {"code": "print(x + 1)"}}\n</tool_call>',
        "<think>\nDone.\n</think>\n\nThe answer is $\\boxed{43}$.",
    ],
}
TOOL_FAMILIES = {"harmony": "gpt-oss", "qwen3": "qwen3"}


def tool_transcript(protocol, sandbox, turns: list[str]) -> str:
    """The attempt `turns` make under `protocol`: each turn, then its calls' real outputs (run in `sandbox`, in one
    interpreter) rendered by the protocol. What a model that writes `turns` gets from SC-TIR, byte for byte."""
    text, key = "", f"transcript-{id(turns)}"
    try:
        for turn_text in turns:
            turn = protocol.parse(text, turn_text, "stop")
            text += turn_text
            if turn.calls:
                outputs = [sandbox.run(call.code, key=key).output for call in turn.calls]
                text += protocol.render_results(turn, outputs)
    finally:
        sandbox.forget(key)
    return text


def make_tool_model(name: str, path: str | Path, *, steps: int = 200, options: dict | None = None):
    """Train a tiny model of protocol `name`'s family ("harmony": gpt-oss, "qwen3") to write `TOOL_TURNS[name]` for
    `TOOL_PROBLEM`, and save it to `path`. The training text is the protocol's own rendering (prompt, turns, tool
    results from a real stateful sandbox), the same layer SC-TIR serves it with; `options` are the protocol's
    (`ProtocolConfig` fields, e.g. the `instructions` a config will serve it with). Returns (path, final loss)."""
    from numina_kit.models import families
    from numina_kit.protocols import ProtocolConfig, make_protocol
    from numina_kit.sandbox.pool import ExecutorConfig, Sandbox

    family = TOOL_FAMILIES[name]
    template = (CHAT_TEMPLATES / f"{family}.jinja").read_text()
    # a first tokenizer renders the prompt; the final one is trained on the whole rendered attempt
    draft = families.train_family_tokenizer(family, [TOOL_PROBLEM, *TOOL_TURNS[name]], template)
    protocol = make_protocol(ProtocolConfig.from_value({**(options or {}), "name": name}), draft)
    with Sandbox(ExecutorConfig(stateful=True, num_workers=1, warmup=False)) as sandbox:
        example = protocol.render_example(TOOL_PROBLEM, tool_transcript(protocol, sandbox, TOOL_TURNS[name]))
    tokenizer = families.train_family_tokenizer(family, [example] * 4, template)
    model = families.build_family_model(family, tokenizer)
    loss = families.memorize(model, tokenizer, [example], steps=steps)
    return families.save(model, tokenizer, path), loss
