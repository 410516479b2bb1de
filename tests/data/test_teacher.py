"""Tests for numina_kit.data.teacher: real HTTP against a scripted OpenAI-compatible server on 127.0.0.1.

Covers the completions and chat request bodies, the API key from an environment variable, the stop string put back
(vLLM's `stop_reason`, or inferred for hosted APIs), retries of 429/500/malformed replies/hangs (client timeout),
fatal 4xx errors, bounded concurrency, chat turns made from a ToRA prompt (any other prompt is one user turn),
`extra_body` given as JSON text, and one seed per prompt of a batch (`seed + i`, the `Generator` rule).
"""

import pytest

from numina_kit.data.teacher import HTTPTeacher, TeacherConfig, TeacherError, prompt_to_messages
from numina_kit.errors import InputError
from numina_kit.models.base import SamplingParams
from numina_kit.protocols.tora import STOP, render_output, render_prompt
from numina_kit.testing import OpenAIServer, Reply, completion_reply, sequence


def teacher(url: str, **overrides) -> HTTPTeacher:
    settings = dict(base_url=url, model="m", timeout_s=1.0, max_retries=3, backoff_s=0.01, backoff_max_s=0.05)
    return HTTPTeacher(TeacherConfig(**(settings | overrides)))


PARAMS = SamplingParams(temperature=0.8, max_new_tokens=64, stop=(STOP,), seed=7)
CODE = "Compute.\n```python\nprint(6*7)\n```\n"


@pytest.mark.parametrize(
    ("reply", "expected_text", "finish"),
    [
        (completion_reply(CODE, stop_reason=STOP), CODE + STOP, "stop"),  # vLLM names the stop string
        (completion_reply(CODE), CODE + STOP, "stop"),  # hosted: inferred from the closed code block
        (completion_reply(CODE + "```output"), CODE + STOP, "stop"),  # stop string cut mid-way
        (completion_reply("So $\\boxed{42}$."), "So $\\boxed{42}$.", "stop"),  # EOS: nothing added
        (completion_reply("Compute.\n```python\nprint(6", finish="length"), "Compute.\n```python\nprint(6", "length"),
    ],
)
def test_completion_text_and_stop(reply: Reply, expected_text: str, finish: str) -> None:
    with OpenAIServer(sequence(reply)) as server:
        completion = teacher(server.url).complete(render_prompt("What is 6 times 7?"), PARAMS)
    assert completion.text == expected_text
    assert completion.finish_reason == finish
    assert completion.prompt_tokens == 10 and completion.num_tokens >= 1
    path, body, _ = server.requests[0]
    assert path == "/v1/completions"
    assert body["prompt"] == render_prompt("What is 6 times 7?")
    assert body["stop"] == [STOP] and body["seed"] == 7 and body["max_tokens"] == 64 and body["model"] == "m"


def test_api_key_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_TEACHER_KEY", "sk-secret")
    with OpenAIServer(sequence(completion_reply("ok"))) as server:
        teacher(server.url, api_key_env="TEST_TEACHER_KEY").complete("### Problem: p\n### Solution: ", PARAMS)
    assert server.requests[0][2]["Authorization"] == "Bearer sk-secret"


def test_missing_api_key_is_an_input_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TEST_TEACHER_KEY", raising=False)
    with pytest.raises(InputError, match="TEST_TEACHER_KEY"):
        HTTPTeacher(TeacherConfig(api_key_env="TEST_TEACHER_KEY"))


@pytest.mark.parametrize(
    ("failure", "kind"),
    [
        (Reply(status=429, body=b'{"error": "rate limited"}', headers={"Retry-After": "0"}), "http_429"),
        (Reply(status=500, body=b"internal error"), "http_500"),
        (Reply(status=503, body=b"overloaded"), "http_503"),
        (Reply(body=b"<html>proxy error</html>"), "malformed"),
        (Reply(body={"choices": []}), "malformed"),
        (Reply(body={"choices": [{"text": None}]}), "malformed"),
        (Reply(delay_s=1.6, body=b"{}"), "timeout"),  # a hang: the client's 1 s timeout fires
    ],
)
def test_transient_failures_are_retried(failure: Reply, kind: str) -> None:
    with OpenAIServer(sequence(failure, failure, completion_reply("So $\\boxed{42}$."))) as server:
        client = teacher(server.url)
        completion = client.complete(render_prompt("p"), PARAMS)
    assert completion.text == "So $\\boxed{42}$."
    assert len(server.requests) == 3
    stats = client.stats.to_dict()
    assert stats["errors"] == {kind: 2} and stats["retries"] == 2 and stats["completions"] == 1
    assert stats["requests"] == 3 and stats["failures"] == 0


def test_retries_run_out() -> None:
    with OpenAIServer(sequence(Reply(status=500, body=b"down"))) as server:
        client = teacher(server.url, max_retries=2)
        with pytest.raises(TeacherError, match="after 3 tries.*HTTP 500") as error:
            client.complete(render_prompt("p"), PARAMS)
    assert not error.value.fatal
    assert len(server.requests) == 3 and client.stats.failures == 1


@pytest.mark.parametrize("status", [400, 401, 404])
def test_client_errors_are_fatal_and_not_retried(status: int) -> None:
    reply = Reply(status=status, body=b'{"error": "bad"}')
    with OpenAIServer(sequence(reply)) as server, pytest.raises(TeacherError, match=f"HTTP {status}") as error:
        teacher(server.url).complete(render_prompt("p"), PARAMS)
    assert error.value.fatal and len(server.requests) == 1


def test_connection_refused_is_retried_then_fails() -> None:
    with OpenAIServer(sequence(completion_reply("x"))) as server:
        url = server.url
    with pytest.raises(TeacherError, match="connection"):
        teacher(url, max_retries=1).complete(render_prompt("p"), PARAMS)


def test_concurrency_is_bounded_and_order_kept() -> None:
    def respond(path: str, body: dict, headers: dict) -> Reply:
        return Reply(body=completion_reply(f"echo {body['prompt'][-2:]}").body, delay_s=0.05)

    prompts = [f"### Problem: p\n### Solution: {i:02d}" for i in range(12)]
    with OpenAIServer(respond) as server:
        completions = teacher(server.url, max_concurrency=3).generate(prompts, PARAMS)
    assert [c.text for c in completions] == [f"echo {i:02d}" for i in range(12)]
    assert server.max_active <= 3


def test_chat_api_turns_and_stop() -> None:
    solution = CODE + STOP + render_output("42") + "So far so good.\n" + CODE
    prompt = render_prompt("What is 6 times 7?") + solution + STOP + render_output("42")
    with OpenAIServer(sequence(completion_reply("Thus $\\boxed{42}$.", chat=True))) as server:
        completion = teacher(server.url, api="chat", system_prompt="SYS").complete(prompt, PARAMS)
    assert completion.text == "Thus $\\boxed{42}$."
    path, body, _ = server.requests[0]
    assert path == "/v1/chat/completions" and "prompt" not in body
    assert body["messages"] == [
        {"role": "system", "content": "SYS"},
        {"role": "user", "content": "What is 6 times 7?"},
        {"role": "assistant", "content": CODE},
        {"role": "user", "content": "```output\n42\n```"},
        {"role": "assistant", "content": "So far so good.\n" + CODE},
        {"role": "user", "content": "```output\n42\n```"},
    ]


def test_chat_model_that_ends_its_turn_after_code_gets_the_stop_string() -> None:
    with OpenAIServer(sequence(completion_reply(CODE.rstrip(), chat=True))) as server:
        completion = teacher(server.url, api="chat").complete(render_prompt("p"), PARAMS)
    assert completion.text == CODE + STOP


def test_prompt_to_messages_sends_other_prompts_as_one_user_turn() -> None:
    assert prompt_to_messages("Write a problem.\n## Math Content\nx", "S") == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "Write a problem.\n## Math Content\nx"},
    ]
    assert prompt_to_messages(render_prompt("p")) == [{"role": "user", "content": "p"}]


def test_extra_body_from_json_text() -> None:
    assert TeacherConfig(extra_body='{"top_k": 20}').extra_body == {"top_k": 20}


@pytest.mark.parametrize(
    ("key", "value"),
    [("api", "embeddings"), ("max_concurrency", 0), ("timeout_s", 0), ("extra_body", "{bad"), ("extra_body", "[1]")],
)
def test_bad_config(key: str, value: object) -> None:
    with pytest.raises(InputError):
        TeacherConfig(**{key: value})


def test_a_batch_gets_one_seed_per_prompt_as_the_generator_protocol_says() -> None:
    replies = [completion_reply("So $\\boxed{1}$.") for _ in range(3)]
    with OpenAIServer(sequence(*replies)) as server:
        teacher(server.url).generate([render_prompt("p")] * 3, PARAMS)
    assert sorted(body["seed"] for _, body, _ in server.requests) == [7, 8, 9]
