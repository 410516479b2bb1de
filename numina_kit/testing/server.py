"""A scripted OpenAI-compatible HTTP server on 127.0.0.1 (`OpenAIServer`), the replies it sends, and a scripted
TIR model behind it for the validation suite."""

import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


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


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


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
