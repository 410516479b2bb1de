"""Tests for numina_kit.models.openai_async against a streaming (server-sent events) HTTP server on 127.0.0.1.

Covers the completions and chat streams (text assembled from chunks, progress reported per chunk, the stop string
put back as vLLM names it in `stop_reason`, usage read from the last chunk), an HTTP error raising, cancellation
closing the connection mid-stream (the server sees the client go), the batch interface, and the async SC-TIR
engine solving a problem through the client.
"""

import asyncio
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from numina_kit.data.teacher import TeacherConfig
from numina_kit.models.base import SamplingParams
from numina_kit.protocols.tora import STOP, render_prompt


pytest.importorskip("httpx")

from numina_kit.models.openai_async import OpenAIStreamingGenerator  # noqa: E402


class StreamServer:
    """Streams `pieces(body)` as server-sent events, `delay_s` apart; records requests and clients that left."""

    def __init__(self, pieces, *, delay_s: float = 0.0, status: int = 200, chat: bool = False) -> None:
        self.requests: list[dict] = []
        self.disconnected = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(body)
                self.send_response(status)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                try:
                    for text, finish, stop_reason in pieces(body):
                        choice = {"index": 0, "finish_reason": finish, "stop_reason": stop_reason}
                        choice.update({"delta": {"content": text}} if chat else {"text": text})
                        self.wfile.write(f"data: {json.dumps({'choices': [choice]})}\n\n".encode())
                        self.wfile.flush()
                        time.sleep(delay_s)
                    usage = {"prompt_tokens": 11, "completion_tokens": 5}
                    self.wfile.write(
                        f"data: {json.dumps({'choices': [], 'usage': usage})}\n\ndata: [DONE]\n\n".encode()
                    )
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    server.disconnected.set()

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


CODE = "Compute.\n```python\nprint(6*7)\n```\n"


def code_pieces(body):
    return [("Compute.\n", None, None), ("```python\nprint(6*7)\n", None, None), ("```\n", "stop", STOP)]


@pytest.mark.parametrize("chat", [False, True])
def test_stream_is_assembled_with_the_stop_string_put_back(chat):
    server = StreamServer(code_pieces, chat=chat)
    config = TeacherConfig(base_url=server.url, api="chat" if chat else "completions", model="m")
    generator = OpenAIStreamingGenerator(config)
    progress = []
    try:
        params = SamplingParams(temperature=0.5, max_new_tokens=64, stop=(STOP,), seed=3)
        completion = asyncio.run(
            generator.complete(
                render_prompt("6*7"), params, request_id="r/0/0", on_progress=lambda t, n: progress.append(n)
            )
        )
    finally:
        server.close()
    assert completion.text == CODE + STOP and completion.stop_reason == STOP and completion.finish_reason == "stop"
    assert (completion.num_tokens, completion.prompt_tokens) == (5, 11) and progress == [1, 2, 3]
    (body,) = server.requests
    assert body["stream"] is True and body["seed"] == 3 and body["max_tokens"] == 64 and body["stop"] == [STOP]


def test_http_error_raises():
    server = StreamServer(lambda body: [], status=500)
    try:
        generator = OpenAIStreamingGenerator(TeacherConfig(base_url=server.url))
        with pytest.raises(RuntimeError, match="HTTP 500"):
            asyncio.run(generator.complete("p", SamplingParams(), request_id="r/0/0"))
    finally:
        server.close()


def test_cancelling_a_request_closes_its_connection():
    server = StreamServer(lambda body: [("tok ", None, None)] * 400, delay_s=0.02)
    generator = OpenAIStreamingGenerator(TeacherConfig(base_url=server.url))
    seen = []

    async def cancel_after_two_chunks():
        task = asyncio.current_task()

        def progress(text, tokens):
            seen.append(text)
            if tokens == 2:
                task.cancel()

        await generator.complete("p", SamplingParams(), request_id="r/0/0", on_progress=progress)

    try:
        with pytest.raises(asyncio.CancelledError):
            asyncio.run(cancel_after_two_chunks())
        assert server.disconnected.wait(30), "the server never saw the client go"
    finally:
        server.close()
    assert seen == ["tok ", "tok tok "]


def test_batch_interface_and_the_async_engine_through_the_client():
    from numina_kit.sandbox.pool import ExecutorConfig, Sandbox
    from numina_kit.sctir.loop import SCTIRConfig, solve

    def pieces(body):
        if body["prompt"].endswith("```output\n42\n```\n"):
            return [("So $\\boxed{42}$.", "stop", None)]
        return code_pieces(body)

    server = StreamServer(pieces)
    generator = OpenAIStreamingGenerator(TeacherConfig(base_url=server.url, max_concurrency=8))
    try:
        completions = generator.generate(["a", "b"], SamplingParams(seed=5, stop=(STOP,)))
        with Sandbox(ExecutorConfig(timeout=5.0)) as sandbox:
            solution = solve("What is 6*7?", generator, SCTIRConfig(num_candidates=3), executor=sandbox)
    finally:
        server.close()
    assert [c.text for c in completions] == [CODE + STOP] * 2
    assert sorted(body["seed"] for body in server.requests[:2]) == [5, 6]
    assert solution.answer == 42 and solution.votes == [(42, 3)] and len(server.requests) == 2 + 6
