"""The HTTP teacher: an OpenAI-compatible server as a `Generator`, for data generation (TIR solutions, JiuZhang problems).

`HTTPTeacher` talks to any OpenAI-compatible server (a local `vllm serve`, or a hosted API whose key is read from an
environment variable) with the standard library only. It bounds the number of requests in flight, and retries
HTTP 429, 5xx, timeouts, dropped connections and malformed replies with exponential backoff (honouring
`Retry-After`); a 4xx other than 408/409/429 is a configuration mistake and fails at once with `fatal=True`.
It implements the `Generator` protocol (`generate` sends a batch's requests concurrently), so SC-TIR, TIR data
synthesis and evaluation use it like any in-process model; `complete` is one request, safe to call from threads.

Prompts are always ToRA text (`numina_kit.protocols.tora`): `### Problem: ...\\n### Solution: ` plus the solution so far.
The "completions" API continues that text directly. The "chat" API cannot continue a partial assistant turn on most
servers, so the text is split into turns: the problem as the user turn, each piece of solution up to an output
block as an assistant turn, and each output block as a user turn; the reply is the next piece of solution.
"""

import http.client
import json
import logging
import os
import random
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Literal

from numina_kit.errors import InputError
from numina_kit.models.base import Completion, Generator, SamplingParams
from numina_kit.protocols.tora import OUTPUT_START, PROBLEM_PREFIX, SOLUTION_PREFIX, STOP


logger = logging.getLogger(__name__)

DEFAULT_SYSTEM_PROMPT = (
    "Solve the math problem by integrating step-by-step reasoning with Python code. Write each piece of code in a "
    "```python block and end it with ```; its printed output will be given back to you in an ```output block. "
    "Use sympy for exact arithmetic. Put the final answer in \\boxed{}."
)


class TeacherError(RuntimeError):
    """A completion that could not be had; `fatal` means retrying will not help (bad key, model or URL)."""

    def __init__(self, message: str, *, fatal: bool = False) -> None:
        super().__init__(message)
        self.fatal = fatal


@dataclass
class TeacherConfig:
    """How to reach an OpenAI-compatible server.

    `api` is "completions" (text continuation: exact ToRA format, what `vllm serve` of a base or TIR model wants) or
    "chat" (hosted chat models). `api_key_env` names the environment variable holding the key (never the key
    itself); empty means no Authorization header, as for a local server. `extra_body` is merged into every request
    (e.g. vLLM's `{"top_k": 20}`).
    """

    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "default"
    api: Literal["completions", "chat"] = "completions"
    api_key_env: str = ""
    system_prompt: str = DEFAULT_SYSTEM_PROMPT
    max_concurrency: int = 16
    timeout_s: float = 300.0
    max_retries: int = 6
    backoff_s: float = 1.0
    backoff_max_s: float = 60.0
    extra_body: dict | str = field(default_factory=dict)  # a mapping, or its JSON text (on the command line)

    def __post_init__(self) -> None:
        if isinstance(self.extra_body, str):
            try:
                self.extra_body = json.loads(self.extra_body or "{}")
            except json.JSONDecodeError as error:
                raise InputError(f"teacher extra_body is not JSON: {error.msg}") from None
        if not isinstance(self.extra_body, dict):
            raise InputError(f"teacher extra_body must be a mapping, got {self.extra_body!r}")
        if self.api not in ("completions", "chat"):
            raise InputError(f"teacher api must be 'completions' or 'chat', got {self.api!r}")
        if self.max_concurrency < 1:
            raise InputError(f"teacher max_concurrency must be >= 1, got {self.max_concurrency}")
        if self.max_retries < 0 or self.timeout_s <= 0 or self.backoff_s < 0:
            raise InputError("teacher max_retries, backoff_s must be >= 0 and timeout_s > 0")


@dataclass
class TeacherStats:
    """Counters of one teacher's traffic, shared by its threads."""

    requests: int = 0
    completions: int = 0
    retries: int = 0
    failures: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def count(self, **deltas: int) -> None:
        with self._lock:
            for name, delta in deltas.items():
                setattr(self, name, getattr(self, name) + delta)

    def count_error(self, kind: str) -> None:
        with self._lock:
            self.errors[kind] = self.errors.get(kind, 0) + 1

    def to_dict(self) -> dict:
        with self._lock:
            return {
                "requests": self.requests,
                "completions": self.completions,
                "retries": self.retries,
                "failures": self.failures,
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "errors": dict(sorted(self.errors.items())),
            }


class _Retryable(Exception):
    def __init__(self, kind: str, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after


def prompt_to_messages(prompt: str, system_prompt: str = "") -> list[dict[str, str]]:
    """A ToRA prompt (problem plus solution so far) as chat turns; output blocks become user turns.

    Any other prompt (a JiuZhang request, `numina_kit.data.stages`) is one user turn.
    """
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    if not prompt.startswith(PROBLEM_PREFIX) or f"\n{SOLUTION_PREFIX}" not in prompt:
        return [*messages, {"role": "user", "content": prompt}]
    problem, solution = prompt[len(PROBLEM_PREFIX) :].split(f"\n{SOLUTION_PREFIX}", 1)
    messages.append({"role": "user", "content": problem})
    pieces = solution.split(OUTPUT_START)
    for i, piece in enumerate(pieces):
        prose = piece
        if i > 0:
            output, _, prose = piece.partition("```\n")
            messages.append({"role": "user", "content": f"{OUTPUT_START}{output}```"})
        if prose:
            messages.append({"role": "assistant", "content": prose})
    return messages


def _ends_in_code_block(text: str) -> bool:
    """True when `text` ends with a closed ```python block, i.e. the model stopped to see the code's output."""
    stripped = text.rstrip()
    if not stripped.endswith("```"):
        return False
    last_open = stripped.rfind("```python")
    return last_open != -1 and stripped.rfind("```output") < last_open and stripped.count("```", last_open) == 2


def restore_stop(text: str, finish_reason: str | None, stop_reason: object, stops: tuple[str, ...]) -> str:
    """Put the stop string back at the end of `text`, as the `Generator` contract wants.

    OpenAI-compatible servers drop it; vLLM names it in `stop_reason`, hosted APIs do not, so then it is inferred
    from a closed code block at the end. A chat model that ends its turn after a code block gets the same treatment.
    """
    if finish_reason != "stop" or STOP not in stops:
        return text
    if isinstance(stop_reason, str) and stop_reason in stops:
        return text + stop_reason
    if text.endswith(STOP):
        return text
    if text.rstrip().endswith("```output"):
        return text.rstrip() + "\n"
    if _ends_in_code_block(text):
        return text.rstrip() + "\n" + STOP
    return text


class HTTPTeacher:
    """An OpenAI-compatible endpoint as a teacher; thread-safe, at most `max_concurrency` requests in flight."""

    def __init__(self, config: TeacherConfig) -> None:
        self.config = config
        self.stats = TeacherStats()
        self._slots = threading.BoundedSemaphore(config.max_concurrency)
        self._api_key = ""
        if config.api_key_env:
            self._api_key = os.environ.get(config.api_key_env, "")
            if not self._api_key:
                raise InputError(f"environment variable {config.api_key_env} (teacher api_key_env) is not set")
        self.url = config.base_url.rstrip("/") + ("/chat/completions" if config.api == "chat" else "/completions")

    def generate(self, prompts: list[str], params: SamplingParams) -> list[Completion]:
        """The `Generator` protocol: one completion per prompt, in order, requested concurrently.

        With a seed, prompt i is requested with seed `seed + i` (the protocol's rule), so the candidates of one
        SC-TIR round, which share a prompt, are different samples.
        """
        seeded = [
            params if params.seed is None else replace(params, seed=params.seed + i) for i in range(len(prompts))
        ]
        if len(prompts) == 1:
            return [self.complete(prompts[0], seeded[0])]
        with ThreadPoolExecutor(max_workers=min(len(prompts), self.config.max_concurrency) or 1) as pool:
            return list(pool.map(self.complete, prompts, seeded))

    def count_tokens(self, text: str) -> int:
        """An estimate (4 characters a token): the server's tokenizer is not available here."""
        return max(1, len(text) // 4)

    def complete(self, prompt: str, params: SamplingParams) -> Completion:
        """One completion of `prompt`, retried on transient failures; raises `TeacherError` when none can be had."""
        body = self.request_body(prompt, params)
        for attempt in range(self.config.max_retries + 1):
            try:
                with self._slots:
                    self.stats.count(requests=1)
                    reply = self._post(body)
                completion = self._parse(reply, params)
            except _Retryable as error:
                self.stats.count_error(error.kind)
                if attempt == self.config.max_retries:
                    self.stats.count(failures=1)
                    raise TeacherError(f"teacher failed after {attempt + 1} tries: {error}") from None
                delay = min(self.config.backoff_max_s, self.config.backoff_s * 2**attempt)
                delay = error.retry_after if error.retry_after is not None else delay * random.uniform(0.5, 1.0)
                logger.debug("teacher retry %d in %.2fs: %s", attempt + 1, delay, error)
                self.stats.count(retries=1)
                time.sleep(min(delay, self.config.backoff_max_s))
                continue
            except TeacherError:
                self.stats.count(failures=1)
                raise
            self.stats.count(
                completions=1, prompt_tokens=completion.prompt_tokens, completion_tokens=completion.num_tokens
            )
            return completion
        raise AssertionError("unreachable")

    def request_body(self, prompt: str, params: SamplingParams) -> dict:
        """The JSON body of one request for `prompt` (the streaming SC-TIR client sends it too)."""
        body: dict = {
            "model": self.config.model,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_new_tokens,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = params.seed
        if params.min_p:
            body["min_p"] = params.min_p  # vLLM's extension of the OpenAI API, as the two below
        if not params.skip_special_tokens:
            body["skip_special_tokens"] = False
        if params.logprobs and self.config.api != "chat":
            body["logprobs"] = params.logprobs
        if self.config.api == "chat":
            body["messages"] = prompt_to_messages(prompt, self.config.system_prompt)
        else:
            body["prompt"] = prompt
        body.update(self.config.extra_body)
        return body

    def headers(self) -> dict[str, str]:
        """The HTTP headers of a request: JSON, and the API key when one is configured."""
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        return headers

    def _post(self, body: dict) -> bytes:
        headers = self.headers()
        request = urllib.request.Request(self.url, data=json.dumps(body).encode(), headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.config.timeout_s) as response:
                return response.read()
        except urllib.error.HTTPError as error:
            detail = error.read()[:200].decode(errors="replace").strip()
            if error.code == 429 or error.code in (408, 409) or error.code >= 500:
                retry_after = _retry_after(error.headers.get("Retry-After"))
                raise _Retryable(f"http_{error.code}", f"HTTP {error.code}: {detail}", retry_after) from None
            raise TeacherError(f"teacher HTTP {error.code} from {self.url}: {detail}", fatal=True) from None
        except (TimeoutError, urllib.error.URLError, http.client.HTTPException, OSError) as error:
            reason = getattr(error, "reason", error)
            kind = "timeout" if isinstance(reason, TimeoutError) or "timed out" in str(reason) else "connection"
            raise _Retryable(kind, f"{kind}: {reason}") from None

    def _parse(self, raw: bytes, params: SamplingParams) -> Completion:
        try:
            reply = json.loads(raw)
            choice = reply["choices"][0]
            text = choice["message"]["content"] if self.config.api == "chat" else choice["text"]
            if not isinstance(text, str):
                raise TypeError(f"text is {type(text).__name__}")
        except (ValueError, KeyError, IndexError, TypeError) as error:
            raise _Retryable("malformed", f"malformed reply ({error!r}): {raw[:120]!r}") from None
        finish = choice.get("finish_reason")
        text = restore_stop(text, finish, choice.get("stop_reason"), params.stop)
        usage = reply.get("usage") or {}
        return Completion(
            text=text,
            finish_reason="length" if finish == "length" else "stop",
            stop_reason=STOP if text.endswith(STOP) and STOP in params.stop else None,
            num_tokens=int(usage.get("completion_tokens") or 0),
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
        )


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def open_teacher(
    kind: str, config: TeacherConfig, *, model_path: str = "", backend: str = "auto", role: str = "teacher"
) -> Generator:
    """The `Generator` a data script's recipe names: "http" (an `HTTPTeacher` on `config`) or "generator" (the model
    at `model_path`, loaded in this process by `numina_kit.models.load.load_generator`)."""
    if kind == "http":
        return HTTPTeacher(config)
    if kind == "generator":
        if not model_path:
            raise InputError(f"{role}: generator needs model_path")
        from numina_kit.models.load import load_generator

        return load_generator(model_path, backend=backend)
    raise InputError(f"{role} must be 'http' or 'generator', got {kind!r}")
