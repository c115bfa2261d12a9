"""The official openai SDK against the real gateway on loopback, in front of the simulator."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageFunctionToolCall

from tests.servers import GatewayServer, SimulatorServer


def client(gw: GatewayServer, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.v1, api_key=key, max_retries=0)


def test_chat_completion_sync(gateway: GatewayServer) -> None:
    with client(gateway, gateway.create_key()) as c:
        reply = c.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hello there"}], max_tokens=4)
    assert reply.choices[0].message.content == "the gateway keeps every"
    assert reply.usage is not None and reply.usage.completion_tokens == 4


async def test_chat_completion_async(gateway: GatewayServer) -> None:
    async with openai.AsyncOpenAI(base_url=gateway.v1, api_key=gateway.create_key(),
                                  max_retries=0) as c:
        reply = await c.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    assert reply.choices[0].message.content == "the gateway"
    assert reply.choices[0].finish_reason == "stop"


def test_streaming_with_usage(gateway: GatewayServer) -> None:
    with client(gateway, gateway.create_key()) as c:
        stream = c.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}], max_tokens=5,
            stream=True, stream_options={"include_usage": True})
        chunks = list(stream)
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "the gateway keeps every call"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5


def test_tools_and_unknown_fields_pass_through(gateway: GatewayServer,
                                                simulator: SimulatorServer) -> None:
    tools: list[Any] = [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
    with client(gateway, gateway.create_key()) as c:
        reply = c.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "weather in Oslo?"}],
            tools=tools, tool_choice="auto", seed=7, n=1, stop=["\n"], logprobs=True,
            response_format={"type": "json_object"},
            extra_body={"vendor_knob": {"nested": [1, 2, 3]}, "top_k": 40})
    call = reply.choices[0].message.tool_calls
    assert call is not None and isinstance(call[0], ChatCompletionMessageFunctionToolCall)
    assert call[0].function.name == "get_weather"
    assert reply.choices[0].finish_reason == "tool_calls"
    sent = simulator.simulator.requests[-1]["body"]
    assert sent["model"] == "sim-upstream"  # the deployment's model name
    assert sent["tools"] == tools
    assert sent["vendor_knob"] == {"nested": [1, 2, 3]} and sent["top_k"] == 40
    assert sent["seed"] == 7 and sent["stop"] == ["\n"] and sent["logprobs"] is True
    assert sent["response_format"] == {"type": "json_object"}


def test_completions_and_embeddings(gateway: GatewayServer) -> None:
    with client(gateway, gateway.create_key()) as c:
        completion = c.completions.create(model="chat", prompt="Once upon", max_tokens=3)
        streamed = "".join(ch.choices[0].text for ch in c.completions.create(
            model="chat", prompt="Once upon", max_tokens=3, stream=True) if ch.choices)
        embedding = c.embeddings.create(model="chat", input=["a", "b"])
    assert completion.choices[0].text == "the gateway keeps"
    assert streamed == "the gateway keeps"
    assert [e.index for e in embedding.data] == [0, 1]
    assert len(embedding.data[0].embedding) == 16
    assert embedding.data[0].embedding != embedding.data[1].embedding


def test_models_lists_only_what_the_key_may_use(make_gateway, simulator) -> None:  # type: ignore[no-untyped-def]
    dep = [{"url": simulator.url}]
    gw = make_gateway([{"name": "a", "deployments": dep}, {"name": "b", "deployments": dep}])
    with client(gw, gw.create_key(models=["b"])) as c:
        assert [m.id for m in c.models.list()] == ["b"]
        assert c.models.retrieve("b").id == "b"
        with pytest.raises(openai.NotFoundError):
            c.models.retrieve("a")
    with client(gw, gw.create_key()) as c:
        assert sorted(m.id for m in c.models.list()) == ["a", "b"]


def test_error_statuses_in_openai_shape(make_gateway, simulator) -> None:  # type: ignore[no-untyped-def]
    gw = make_gateway([
        {"name": "chat", "deployments": [{"url": simulator.url}]},
        {"name": "private", "deployments": [{"url": simulator.url}]},
    ])
    msgs = [{"role": "user", "content": "hi"}]
    with client(gw, "ih-not-a-real-key") as c, pytest.raises(openai.AuthenticationError) as e401:
        c.chat.completions.create(model="chat", messages=msgs)  # type: ignore[arg-type]
    assert e401.value.code == "invalid_api_key"
    with client(gw, gw.create_key(models=["chat"])) as c:
        with pytest.raises(openai.PermissionDeniedError) as e403:
            c.chat.completions.create(model="private", messages=msgs)  # type: ignore[arg-type]
        assert e403.value.code == "permission_denied"
    with client(gw, gw.create_key()) as c:
        with pytest.raises(openai.NotFoundError) as e404:
            c.chat.completions.create(model="nope", messages=msgs)  # type: ignore[arg-type]
        assert e404.value.code == "model_not_found"
        with pytest.raises(openai.BadRequestError) as e400:
            c.chat.completions.create(model="chat", messages=[])
        assert e400.value.param == "messages"
        body = e400.value.body
        assert isinstance(body, dict) and set(body) == {"message", "type", "param", "code"}


def test_upstream_failures_map_to_502_503_504(make_gateway, make_simulator) -> None:  # type: ignore[no-untyped-def]
    failing = make_simulator(faults=[{"kind": "status", "status": 500, "rate": 1.0}])
    hanging = make_simulator(faults=[{"kind": "hang", "rate": 1.0}])
    gw = make_gateway([
        {"name": "failing", "deployments": [{"url": failing.url}, {"url": failing.url}]},
        {"name": "down", "deployments": [{"url": "http://127.0.0.1:9/v1"}]},
        {"name": "hanging", "routing": {"timeout": {"total": "300ms", "first_token": "200ms"}},
         "deployments": [{"url": hanging.url}]},
    ])
    msgs = [{"role": "user", "content": "hi"}]
    with client(gw, gw.create_key()) as c:
        with pytest.raises(openai.InternalServerError) as e502:
            c.chat.completions.create(model="failing", messages=msgs)  # type: ignore[arg-type]
        assert e502.value.status_code == 502
        assert "answered (500)" in e502.value.message
        assert "after 3 attempts" in e502.value.message  # retries.attempts defaults to 3
        with pytest.raises(openai.InternalServerError) as e503:
            c.chat.completions.create(model="down", messages=msgs)  # type: ignore[arg-type]
        assert e503.value.status_code == 503 and e503.value.code == "upstream_unavailable"
        with pytest.raises(openai.InternalServerError) as e504:
            c.chat.completions.create(model="hanging", messages=msgs)  # type: ignore[arg-type]
        assert e504.value.status_code == 504
        with pytest.raises(openai.InternalServerError) as e504s:
            list(c.chat.completions.create(model="hanging", messages=msgs, stream=True))  # type: ignore[arg-type]
        assert e504s.value.status_code == 504
    assert failing.simulator.served == 3  # both deployments, then one again: 3 attempts


@pytest.mark.parametrize("status, says", [(401, "refused the gateway's credentials"),
                                          (404, "does not know the model")])
def test_upstream_misconfiguration_is_a_502_not_the_clients_fault(  # type: ignore[no-untyped-def]
    make_gateway, make_simulator, status: int, says: str
) -> None:
    refusing = make_simulator(faults=[{"kind": "status", "status": status, "rate": 1.0}])
    gw = make_gateway([{"name": "chat", "deployments": [{"url": refusing.url}]}])
    with client(gw, gw.create_key()) as c, pytest.raises(openai.InternalServerError) as err:
        c.chat.completions.create(model="chat", messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 502 and says in err.value.message


def test_failover_to_a_healthy_deployment(make_gateway, make_simulator) -> None:  # type: ignore[no-untyped-def]
    broken = make_simulator(faults=[{"kind": "status", "status": 503, "rate": 1.0}])
    healthy = make_simulator()
    gw = make_gateway([{"name": "chat", "deployments": [
        {"name": "broken", "url": broken.url},
        {"name": "dead", "url": "http://127.0.0.1:9/v1"},
        {"name": "healthy", "url": healthy.url},
    ]}])
    with client(gw, gw.create_key()) as c:
        for _ in range(10):
            raw = c.chat.completions.with_raw_response.create(
                model="chat", messages=[{"role": "user", "content": "hi"}])
            assert raw.headers["x-ironhold-deployment"] == "healthy"
            assert raw.parse().choices[0].message.content
    assert healthy.simulator.served == 10


def test_stream_cut_after_commit_ends_with_error_event(make_gateway, make_simulator) -> None:  # type: ignore[no-untyped-def]
    cutting = make_simulator(faults=[{"kind": "cut", "rate": 1.0, "after_chunks": 2}])
    gw = make_gateway([{"name": "chat", "deployments": [{"url": cutting.url}]}])
    received: list[str] = []
    with client(gw, gw.create_key()) as c, pytest.raises(openai.APIError) as err:
        for chunk in c.chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "hi"}], stream=True
        ):
            received.append(chunk.choices[0].delta.content or "")
    # What came before the cut was delivered (the guard may regroup it: it holds back the word
    # still being written until the next chunk or the end).
    assert "".join(received) == "the gateway"
    assert "broke off" in err.value.message


@pytest.mark.parametrize(("messages", "fields", "param"), [
    ([{"role": 3}], {}, "messages[0].role"),
    ([{"role": "wizard", "content": "hi"}], {}, "messages[0].role"),
    ([{"role": "user", "content": 12}], {}, "messages[0].content"),
    ([{"role": "user", "content": [{"type": "text"}]}], {}, "messages[0].content[0].text"),
    ([{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": "f()"}], {},
     "messages[1].tool_calls"),
    ([{"role": "user", "content": "hi"}, {"role": "tool", "content": "42"}], {},
     "messages[1].tool_call_id"),
    ([{"role": "user", "content": "hi"}], {"max_tokens": "many"}, "max_tokens"),
    ([{"role": "user", "content": "hi"}], {"n": 0}, "n"),
    ([{"role": "user", "content": "hi"}], {"tools": {}}, "tools"),
])
def test_what_openai_refuses_the_gateway_refuses(gateway: GatewayServer,
                                                 simulator: SimulatorServer, messages: object,
                                                 fields: dict[str, object], param: str) -> None:
    """Was: answered 200, the malformed request passed to the model unchecked."""
    seen = len(simulator.simulator.requests)
    with client(gateway, gateway.create_key()) as c, \
            pytest.raises(openai.BadRequestError) as caught:
        c.chat.completions.create(model="chat", messages=messages,  # type: ignore[call-overload]
                                  extra_body=fields)
    assert caught.value.status_code == 400 and caught.value.param == param
    assert param in caught.value.message
    assert len(simulator.simulator.requests) == seen  # the model never saw it
