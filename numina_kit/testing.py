"""Stand-ins that tests and benchmarks both use: a fake clock, scripted generators (batch and streaming), a scripted
OpenAI server, a scripted TIR teacher, a virtual-time event loop, the real vLLM engine on CPU, and the answer and
trace-replay comparisons that tests and benchmarks both measure with.

They are part of the library (not of `tests/`) so that a benchmark never imports a test module, and so that users
can drive `solve`, `make_predict` or a teacher client without a model: every stand-in speaks the same interface as
the real thing (`Generator`, a clock callable, an OpenAI-compatible HTTP endpoint on 127.0.0.1).
"""

import asyncio
import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from numina_kit.answers import is_equivalent, parse_integer
from numina_kit.data.jsonl import read_jsonl
from numina_kit.models.base import Completion, SamplingParams


class FakeClock:
    """A clock that moves only when told to (`clock.now += seconds`); pass it wherever a `clock` is taken."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class ScriptedGenerator:
    """A `Generator` serving canned completions: `plan[call][position]` is the text for that prompt of that call.

    It records every call's prompts and params, counts tokens as characters, can advance a `FakeClock` by
    `seconds_per_call`, and raises a CUDA-like error on call `fail_on_call`.
    """

    def __init__(
        self,
        plan: list[list[str]],
        clock: FakeClock | None = None,
        seconds_per_call: float = 0.0,
        fail_on_call: int | None = None,
    ) -> None:
        self.plan, self.clock, self.seconds_per_call, self.fail_on_call = plan, clock, seconds_per_call, fail_on_call
        self.calls: list[list[str]] = []
        self.params: list[SamplingParams] = []

    def generate(self, prompts: list[str], params: SamplingParams) -> list[Completion]:
        call = len(self.calls)
        self.calls.append(list(prompts))
        self.params.append(params)
        if self.clock is not None:
            self.clock.now += self.seconds_per_call
        if call == self.fail_on_call:
            raise RuntimeError("CUDA out of memory")
        texts = self.plan[call]
        if len(texts) != len(prompts):
            raise AssertionError(f"call {call}: {len(prompts)} prompts, the script has {len(texts)}")
        return [
            Completion(text=t, finish_reason="stop", num_tokens=len(t), prompt_tokens=len(p))
            for t, p in zip(texts, prompts, strict=True)
        ]

    def count_tokens(self, text: str) -> int:
        return len(text)


@dataclass
class Reply:
    """What `OpenAIServer` answers one request with; `body` is a dict (sent as JSON) or raw bytes."""

    status: int = 200
    body: dict | bytes = b""
    delay_s: float = 0.0
    headers: dict = field(default_factory=dict)


def completion_reply(text: str, *, finish: str = "stop", stop_reason: str | None = None, chat: bool = False) -> Reply:
    """An OpenAI completions (or, with `chat`, chat completions) reply holding one choice with `text`."""
    choice = {"index": 0, "finish_reason": finish, "stop_reason": stop_reason}
    choice.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
    usage = {"prompt_tokens": 10, "completion_tokens": max(1, len(text) // 4)}
    return Reply(body={"id": "x", "choices": [choice], "usage": usage})


def sequence(*replies: Reply) -> Callable[[str, dict, dict], Reply]:
    """A respond function that answers the n-th request with the n-th reply (the last one repeats)."""
    counter = iter(range(10**9))

    def respond(path: str, body: dict, headers: dict) -> Reply:
        return replies[min(next(counter), len(replies) - 1)]

    return respond


class OpenAIServer:
    """An OpenAI-compatible HTTP server on 127.0.0.1 whose replies come from `respond(path, body, headers)`.

    Use it as a context manager; `url` is the base URL (`http://127.0.0.1:PORT/v1`). It records every request and
    the largest number handled at once, so a client's concurrency can be checked.
    """

    def __init__(self, respond: Callable[[str, dict, dict], Reply]) -> None:
        self.respond = respond
        self.requests: list[tuple[str, dict, dict]] = []
        self.active = 0
        self.max_active = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                headers = dict(self.headers)
                with server._lock:
                    server.requests.append((self.path, body, headers))
                    server.active += 1
                    server.max_active = max(server.max_active, server.active)
                try:
                    reply = server.respond(self.path, body, headers)
                    time.sleep(reply.delay_s)
                    payload = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout): nothing to answer
                finally:
                    with server._lock:
                        server.active -= 1

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self) -> "OpenAIServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


HANG = "<hang>"  # ends a scripted text: stream what comes before it, then wait until the request is cancelled


class ScriptedStreamingGenerator:
    """A `StreamingGenerator` serving canned texts per candidate: `scripts[c][k]` answers candidate c's k-th request.

    The candidate is read from the request id, which the async engine writes as `run/candidate/round`. A text is
    streamed `chunk_chars` characters at a time; before each chunk the generator yields to the event loop and moves
    `clock` (a `FakeClock`) by `seconds_per_chunk`, so tests decide what happens "during" a request without any
    wall-clock wait. A text ending in `HANG` streams up to the marker, then waits until the request is cancelled.
    Requests listed in `fail` (as `(candidate, k)`) raise a CUDA-like error. Tokens are characters. Everything is
    recorded: `requests` (id, prompt, params), `cancelled` and `finished` request ids, and `max_in_flight`.
    """

    def __init__(
        self,
        scripts: list[list[str]],
        clock: FakeClock | None = None,
        *,
        seconds_per_chunk: float = 0.0,
        chunk_chars: int = 8,
        fail: tuple[tuple[int, int], ...] = (),
    ) -> None:
        self.scripts, self.clock, self.seconds_per_chunk = scripts, clock, seconds_per_chunk
        self.chunk_chars, self.fail = chunk_chars, set(fail)
        self.requests: list[tuple[str, str, SamplingParams]] = []
        self.cancelled: list[str] = []
        self.finished: list[str] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._served: dict[int, int] = {}

    def count_tokens(self, text: str) -> int:
        return len(text)

    async def complete(self, prompt: str, params: SamplingParams, *, request_id: str, on_progress=None) -> Completion:
        candidate = int(request_id.split("/")[1])
        k = self._served.get(candidate, 0)
        self._served[candidate] = k + 1
        self.requests.append((request_id, prompt, params))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if (candidate, k) in self.fail:
                raise RuntimeError("CUDA out of memory")
            script = self.scripts[candidate][k]
            hang = script.endswith(HANG)
            text = script.removesuffix(HANG)
            for end in range(self.chunk_chars, len(text) + self.chunk_chars, self.chunk_chars):
                await asyncio.sleep(0)
                if self.clock is not None:
                    self.clock.now += self.seconds_per_chunk
                if on_progress is not None:
                    on_progress(text[:end], min(end, len(text)))
            if hang:
                await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.append(request_id)
            raise
        finally:
            self.in_flight -= 1
        self.finished.append(request_id)
        return Completion(text=text, finish_reason="stop", num_tokens=len(text), prompt_tokens=len(prompt))


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio event loop on virtual time: when nothing is ready to run, the clock jumps to the next timer.

    `await asyncio.sleep(3600)` returns at once with `loop.time()` an hour later, so async code (the async SC-TIR
    engine, a simulated server) runs on simulated time: pass `loop.time` wherever a `clock` is taken. Work in other
    threads that wakes the loop (`run_in_executor`) is not waited for before the clock jumps: simulate with
    coroutines only.
    """

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        super().__init__(_VirtualSelector(self))

    def time(self) -> float:
        return self.now


class _VirtualSelector(selectors.SelectSelector):
    def __init__(self, loop: VirtualTimeLoop) -> None:
        super().__init__()
        self.loop = loop

    def select(self, timeout: float | None = None) -> list:
        events = super().select(0)  # the loop's own wake-up pipe, without waiting
        if events or timeout == 0:
            return events
        if timeout is None:  # nothing scheduled: only another thread can wake the loop
            return super().select(None)
        self.loop.now += timeout
        return []


# ---------------------------------------------------------------- answers: the comparisons the real-data figures use


def answers_agree(recorded: str, extracted: str | None) -> str | None:
    """How an extracted answer agrees with a recorded one: "same" text, same "integer" (`4.0` and `4`), or
    "equivalent" (`is_equivalent(recorded, extracted)`); None when it does not."""
    if extracted is None:
        return None
    if extracted == recorded:
        return "same"
    recorded_int = parse_integer(recorded)
    if recorded_int is not None and recorded_int == parse_integer(extracted):
        return "integer"
    if is_equivalent(recorded, extracted, timeout=5.0):
        return "equivalent"
    return None


def equivalent_forms(answer: str) -> dict[str, str]:
    """`answer` rewritten in forms that mean the same, by name: `$...$`, `\\boxed{}`, `\\frac` <-> `\\dfrac`,
    more and fewer spaces, `\\left(`/`\\right)` added or removed, `\\frac{a}{b}` as `(a)/(b)`."""
    forms = {"dollars": f"${answer}$", "boxed": f"\\boxed{{{answer}}}"}
    if "\\dfrac" in answer:
        forms["frac"] = answer.replace("\\dfrac", "\\frac")
    elif "\\frac" in answer:
        forms["frac"] = answer.replace("\\frac", "\\dfrac")
    spaced = re.sub(r"\s*([,+=])\s*", r"\1 ", answer).strip()
    if spaced != answer:
        forms["spaced"] = spaced
    tight = re.sub(r"(?<![a-zA-Z])\s+|\s+(?![a-zA-Z])", "", answer)  # keeps the space in `\cot x`
    if tight != answer:
        forms["tight"] = tight
    if "\\left" in answer:
        forms["left_right"] = re.sub(r"\\(?:left|right)(?![a-zA-Z])\s*", "", answer)
    elif sum(map(answer.count, "([")) == sum(map(answer.count, ")]")) > 0:
        closed = re.sub(r"[)\]]", lambda m: "\\right" + m.group(0), answer)
        forms["left_right"] = re.sub(r"[(\[]", lambda m: "\\left" + m.group(0), closed)
    slashed = re.sub(r"(?<![\d\s])\s*\\[dt]?frac\{([^{}]*)\}\{([^{}]*)\}", r"(\1)/(\2)", answer)
    if slashed != answer and not re.search(r"\d\s*\\[dt]?frac", answer):  # `1\frac{4}{5}` is a mixed number
        forms["slash"] = slashed
    return forms


# ---- Executed code blocks of ToRA traces: the sandbox's fidelity replay (its test and its benchmark) ---------------

TRACE_BLOCK = re.compile(r"```python\n(.*?)```\n```output\n(.*?)\n```", re.DOTALL)


def load_trace_blocks(path: str | Path) -> list[tuple[str, int, str, str]]:
    """(trace id, block index, code, recorded output) for every executed block of a JSONL file of ToRA traces (one
    `{"id", "solution"}` object a line, each code block followed by the output the original executor printed)."""
    blocks = []
    for row in read_jsonl(path):
        for index, (code, output) in enumerate(TRACE_BLOCK.findall(row["solution"])):
            blocks.append((row["id"], index, code, output))
    return blocks


def reproduces(recorded: str, status: str, output: str) -> bool:
    """Whether a rerun's output matches the recorded one; errors compare on their last line only (ToRA recorded
    only the final exception line)."""
    if output.strip() == recorded.strip():
        return True
    if status != "ok":
        return output.strip().splitlines()[-1:] == recorded.strip().splitlines()[-1:]
    return False


# ---------------------------------------------------------------------------------------------------------------------
# A scripted TIR teacher (TIR data generation's tests and benchmark)
# ---------------------------------------------------------------------------------------------------------------------

# A problem's tag (`[kind]` in its text) picks how `TIRModel` answers it; these kinds make the first request fail.
FIRST_REQUEST_FAILS = {
    "e429": Reply(status=429, body=b'{"error": "slow down"}', headers={"Retry-After": "0"}),
    "e500": Reply(status=500, body=b"boom"),
    "malformed": Reply(body=b"<html>bad gateway</html>"),
    "hang": Reply(delay_s=1.8, body=b"{}"),  # past a client timeout of 1 s
}
# kind -> pass at which the solution is kept (None: never kept), attempts made, code runs per attempt
TIR_KINDS = {
    "right": (1, 1, 1),
    "pass2": (2, 2, 1),
    "pass3": (3, 3, 1),
    "never": (None, 3, 1),
    "nocode": (None, 3, 0),
    "crash": (None, 3, 1),
    "frac": (1, 1, 1),
    **{kind: (1, 1, 1) for kind in FIRST_REQUEST_FAILS},
}


def make_tir_problem(i: int, kind: str):
    """Problem `i` of a kind of `TIR_KINDS`: add two numbers (a fraction answer for `frac`), tagged `[kind]`."""
    from numina_kit.data.problems import Problem

    a, b = 3 + i, 4 + 2 * i
    answer = f"\\frac{{{a}}}{{{a + b}}}" if kind == "frac" else str(a + b)
    return Problem(id=f"p{i:03d}", problem=f"Item {i}: add {a} and {b} [{kind}]", answer=answer)


class TIRModel:
    """A scripted TIR teacher, as an `OpenAIServer` respond function (completions API, ToRA prompts).

    Per problem kind it writes right code, wrong code until pass 2 or 3, no code, crashing code or a fraction, or
    fails its first request; after an output block it boxes what the code printed. It counts, per problem, the
    requests and the first rounds it saw.
    """

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.requests: Counter[str] = Counter()
        self.first_rounds: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, path: str, body: dict, headers: dict) -> Reply:
        from numina_kit.protocols.tora import OUTPUT_START, STOP

        problem, solution = body["prompt"].removeprefix("### Problem: ").split("\n### Solution: ", 1)
        a, b, kind = re.search(r"add (\d+) and (\d+) \[(\w+)\]", problem).groups()
        with self._lock:
            first_request = self.requests[problem] == 0
            self.requests[problem] += 1
        if first_request and kind in FIRST_REQUEST_FAILS:
            return FIRST_REQUEST_FAILS[kind]
        if OUTPUT_START in solution:  # second round: box what the code printed
            value = solution.split(OUTPUT_START)[-1].split("\n")[0]
            return self._reply(completion_reply(f"The code printed {value}, so the answer is $\\boxed{{{value}}}$."))
        if kind == "nocode":
            return self._reply(completion_reply(f"Adding, $\\boxed{{{int(a) + int(b)}}}$."))
        with self._lock:
            attempt = self.first_rounds[problem]
            self.first_rounds[problem] += 1
        wrong = kind == "never" or (kind == "pass2" and attempt < 1) or (kind == "pass3" and attempt < 2)
        code = f"print({a} + {b}{' + 1' if wrong else ''})"
        if kind == "frac":
            code = f"from fractions import Fraction\nprint(Fraction({a}, {a} + {b}))"
        if kind == "crash":
            code = f"print({a} / 0)"
        return self._reply(completion_reply(f"Let me add.\n```python\n{code}\n```\n", stop_reason=STOP))

    def _reply(self, reply: Reply) -> Reply:
        reply.delay_s = self.delay_s
        return reply


# --- the real vLLM engine on CPU (vLLM's CPU build, `make vllm-env`) -------------------------------------------------

# vLLM's engine core and its worker run inside the calling process: a start then takes seconds instead of the minute
# two spawned processes need to import torch and vLLM again. `nobind` leaves the caller's CPU affinity alone.
IN_PROCESS_VLLM_ENV = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_OMP_THREADS_BIND": "nobind"}
# No torch.compile warm-up, one process, and a small KV cache (in host memory).
IN_PROCESS_VLLM_ARGS = {"enforce_eager": True, "distributed_executor_backend": "uni", "kv_cache_memory_bytes": 2**28}
VLLM_MISSING = "vLLM is not installed in this environment: `make test-vllm` runs this in .venv-vllm (vLLM's CPU build)"


def open_vllm_in_process(model_path: str | Path, **overrides: object):
    """A `VLLMGenerator` whose engine runs in this process on vLLM's CPU build, for tests and benchmarks.

    It goes through `load_generator(backend="vllm")` like any caller; only the start-up settings above differ from
    the defaults (they set environment variables of this process, which vLLM reads when an engine starts).
    """
    from numina_kit.models.load import load_generator

    os.environ.update(IN_PROCESS_VLLM_ENV)
    return load_generator(model_path, backend="vllm", **{**IN_PROCESS_VLLM_ARGS, **overrides})


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class VLLMServer:
    """vLLM's OpenAI-compatible server (`vllm serve MODEL`) on 127.0.0.1 in a child process of the current interpreter's
    vLLM, stopped on exit.

    `url` is the OpenAI base URL (`http://127.0.0.1:PORT/v1`); `kill()` ends it at once, as a crash would, and
    `start()` can start it again on the same port; the log is kept in `log_path`. Start-up waits for `/v1/models` to
    answer, at most `start_timeout_s`.
    """

    def __init__(
        self,
        model: str | Path,
        log_path: str | Path,
        *,
        args: tuple[str, ...] = (),
        port: int | None = None,
        start_timeout_s: float = 600,
    ) -> None:
        self.model, self.log_path, self.args, self.start_timeout_s = str(model), Path(log_path), args, start_timeout_s
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.process: subprocess.Popen | None = None

    def start(self) -> "VLLMServer":
        # What `vllm serve` starts. That command itself fails in vllm-cpu 0.32.0: it asks for the version of the
        # distribution "vllm", and the CPU build's distribution is "vllm-cpu".
        command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", self.model]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--served-model-name", "teacher", *self.args]
        env = {**os.environ, "VLLM_CPU_OMP_THREADS_BIND": "nobind"}
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"vllm serve exited with {self.process.returncode}: see {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.url}/models", timeout=2) as reply:
                    if reply.status == 200:
                        return self
            except OSError:
                time.sleep(1)
        self.kill()
        raise RuntimeError(f"vllm serve did not answer within {self.start_timeout_s:.0f} s: see {self.log_path}")

    def kill(self) -> None:
        """End the server and every process it started (its engine core), at once."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        """Ask the server to shut down (SIGTERM), then kill what is left after 30 s."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def __enter__(self) -> "VLLMServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- a scripted model behind an OpenAI-compatible endpoint, for the validation suite --------------------------------


class AnsweringModel:
    """An `OpenAIServer` respond function that plays a TIR model whose answers are scripted: `answer(problem, seed)`.

    Round 1 prints the answer in a code block (and stops at the output fence); after an output block it boxes what
    the code printed. The request's seed differs per candidate (`seed + i`), so `answer` can make candidates of one
    problem disagree. `problems` counts the first-round requests per problem text.
    """

    def __init__(self, answer: Callable[[str, int], str]) -> None:
        self.answer = answer
        self.problems: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, path: str, body: dict, headers: dict) -> Reply:
        from numina_kit.protocols.tora import OUTPUT_START, PROBLEM_PREFIX, SOLUTION_PREFIX, STOP

        problem, solution = body["prompt"].removeprefix(PROBLEM_PREFIX).split(f"\n{SOLUTION_PREFIX}", 1)
        if OUTPUT_START in solution:
            value = solution.split(OUTPUT_START)[-1].split("\n")[0]
            return completion_reply(f"The code printed {value}, so the answer is $\\boxed{{{value}}}$.")
        with self._lock:
            self.problems[problem] += 1
        code = f"print({self.answer(problem, int(body.get('seed') or 0))!r})"
        return completion_reply(f"Let me compute.\n```python\n{code}\n```\n", stop_reason=STOP)


# ---- Tiny tool-calling models of real families (gpt-oss, Qwen3), trained in-process to speak their protocol -------

CHAT_TEMPLATES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "chat_templates"
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
