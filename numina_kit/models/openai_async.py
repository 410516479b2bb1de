"""`OpenAIStreamingGenerator`: an OpenAI-compatible server (`vllm serve`, SGLang, a multi-node deployment) as a
`StreamingGenerator`, one streamed HTTP request per prompt, over `httpx`'s async client.

Requests use the server-sent-events form of the completions (or chat) API. Cancelling a request closes its
connection, which vLLM's server answers by aborting the request and freeing its KV cache. The connection settings
are the teacher's (`numina_kit.data.teacher.TeacherConfig`: base URL, model, API, key variable, extra body,
timeout, concurrency), and so is the request body, so the same server serves data generation and SC-TIR. A failed
request raises (the async SC-TIR engine then loses that candidate, not the problem); there are no retries, since a
competition run cannot wait for a server to come back. `httpx` is imported on first use (`pip install httpx`; it
comes with vLLM).
"""

import asyncio
import json
import logging
from typing import Any

from numina_kit.data.teacher import HTTPTeacher, TeacherConfig, restore_stop
from numina_kit.models.base import Completion, SamplingParams
from numina_kit.models.streaming import Progress, generate_all


logger = logging.getLogger(__name__)


class OpenAIStreamingGenerator:
    """A streaming (and batch) generator over an OpenAI-compatible server.

    `tokenizer` (anything with `encode`, e.g. the served model's transformers tokenizer) makes `count_tokens` exact;
    without it tokens are estimated at 4 characters each, as the teacher does. Tokens generated so far are counted
    as streamed chunks (vLLM sends one token per chunk) until the final usage report gives the exact number.
    """

    def __init__(self, config: TeacherConfig, *, tokenizer: Any = None) -> None:
        self.config = config
        self.tokenizer = tokenizer
        self._teacher = HTTPTeacher(config)  # the request body, the endpoint and the API key
        self._clients: dict[asyncio.AbstractEventLoop, Any] = {}

    def count_tokens(self, text: str) -> int:
        if self.tokenizer is not None:
            return len(self.tokenizer.encode(text))
        return self._teacher.count_tokens(text)

    def generate(self, prompts: list[str], params: SamplingParams) -> list[Completion]:
        """The batch interface: every prompt as its own streamed request, all at once (prompt i seeded `seed + i`)."""
        return generate_all(self, prompts, params)

    def _client(self) -> Any:
        """One `httpx.AsyncClient` per event loop (a client's connections belong to the loop that opened them)."""
        import httpx

        loop = asyncio.get_running_loop()
        if loop not in self._clients:
            limits = httpx.Limits(max_connections=self.config.max_concurrency, max_keepalive_connections=0)
            timeout = httpx.Timeout(self.config.timeout_s, connect=min(30.0, self.config.timeout_s))
            self._clients[loop] = httpx.AsyncClient(limits=limits, timeout=timeout)
        return self._clients[loop]

    async def complete(
        self, prompt: str, params: SamplingParams, *, request_id: str, on_progress: Progress | None = None
    ) -> Completion:
        """One streamed request; cancelling the awaiting task closes the connection (the server aborts it)."""
        body = self._teacher.request_body(prompt, params)
        body.update(stream=True, stream_options={"include_usage": True})
        headers = {**self._teacher.headers(), "X-Request-Id": request_id}
        chat = self.config.api == "chat"
        text, chunks, finish, stop_reason, usage = "", 0, None, None, {}
        async with self._client().stream("POST", self._teacher.url, json=body, headers=headers) as response:
            if response.status_code != 200:
                detail = (await response.aread())[:200].decode(errors="replace").strip()
                raise RuntimeError(f"HTTP {response.status_code} from {self._teacher.url}: {detail}")
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[len("data:") :].strip()
                if data == "[DONE]":
                    break
                event = json.loads(data)
                usage = event.get("usage") or usage
                for choice in event.get("choices") or []:
                    piece = (choice.get("delta") or {}).get("content") if chat else choice.get("text")
                    if piece:
                        text += piece
                        chunks += 1
                    finish = choice.get("finish_reason") or finish
                    stop_reason = choice.get("stop_reason", stop_reason)
                if on_progress is not None and event.get("choices"):
                    on_progress(text, chunks)
        text = restore_stop(text, finish, stop_reason, params.stop)
        ended = next((stop for stop in params.stop if text.endswith(stop)), None)
        return Completion(
            text=text,
            finish_reason="length" if finish == "length" else "stop",
            stop_reason=ended,
            num_tokens=int(usage.get("completion_tokens") or chunks),
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
        )

    async def aclose(self) -> None:
        """Close the HTTP client of the running loop."""
        client = self._clients.pop(asyncio.get_running_loop(), None)
        if client is not None:
            await client.aclose()
