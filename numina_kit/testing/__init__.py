"""Stand-ins that tests and benchmarks both use: a fake clock, scripted generators (batch and streaming), a scripted
OpenAI server, a scripted TIR teacher, a virtual-time event loop, the real vLLM engine on CPU, and the answer and
trace-replay comparisons that tests and benchmarks both measure with.

They are part of the library (not of `tests/`) so that a benchmark never imports a test module, and so that users
can drive `solve`, `make_predict` or a teacher client without a model: every stand-in speaks the same interface as
the real thing (`Generator`, a clock callable, an OpenAI-compatible HTTP endpoint on 127.0.0.1).
"""

from numina_kit.testing.clock import FakeClock, VirtualTimeLoop
from numina_kit.testing.comparisons import TRACE_BLOCK, answers_agree, equivalent_forms, load_trace_blocks, reproduces
from numina_kit.testing.generators import HANG, ScriptedGenerator, ScriptedStreamingGenerator
from numina_kit.testing.server import AnsweringModel, OpenAIServer, Reply, completion_reply, free_port, sequence
from numina_kit.testing.teacher import FIRST_REQUEST_FAILS, TIR_KINDS, TIRModel, make_tir_problem
from numina_kit.testing.tool_models import (
    CHAT_TEMPLATES,
    TOOL_FAMILIES,
    TOOL_PROBLEM,
    TOOL_TURNS,
    make_tool_model,
    tool_transcript,
)
from numina_kit.testing.vllm import (
    IN_PROCESS_VLLM_ARGS,
    IN_PROCESS_VLLM_ENV,
    VLLM_MISSING,
    VLLMServer,
    open_vllm_in_process,
)


__all__ = [
    "AnsweringModel",
    "CHAT_TEMPLATES",
    "FIRST_REQUEST_FAILS",
    "FakeClock",
    "HANG",
    "IN_PROCESS_VLLM_ARGS",
    "IN_PROCESS_VLLM_ENV",
    "OpenAIServer",
    "Reply",
    "ScriptedGenerator",
    "ScriptedStreamingGenerator",
    "TIRModel",
    "TIR_KINDS",
    "TOOL_FAMILIES",
    "TOOL_PROBLEM",
    "TOOL_TURNS",
    "TRACE_BLOCK",
    "VLLMServer",
    "VLLM_MISSING",
    "VirtualTimeLoop",
    "answers_agree",
    "completion_reply",
    "equivalent_forms",
    "free_port",
    "load_trace_blocks",
    "make_tir_problem",
    "make_tool_model",
    "open_vllm_in_process",
    "reproduces",
    "sequence",
    "tool_transcript",
]
