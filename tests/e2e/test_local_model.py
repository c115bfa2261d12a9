"""The real local model (SmolLM2-135M-Instruct) under the managed llama.cpp server, through the
gateway."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from ironhold.api.server import start_server
from ironhold.bootstrap import build_gateway
from ironhold.core.errors import ArtifactIntegrityError, UpstreamUnavailableError
from ironhold.upstream.artifacts import demo_model_path
from ironhold.upstream.signatures import generate_key_pair, sign_model
from tests.servers import GatewayServer, LoopThread, free_port, gateway_config

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def smollm() -> tuple[Path, str]:
    return demo_model_path()


@pytest.fixture(scope="module")
def model_gateway(tmp_path_factory: pytest.TempPathFactory,
                  smollm: tuple[Path, str]) -> Iterator[GatewayServer]:
    tmp = tmp_path_factory.mktemp("model")
    gguf, digest = smollm
    # Pinned and signed: both are checked before it serves.
    generate_key_pair(tmp / "signing.pem", tmp / "signing.pub")
    sign_model(gguf, tmp / "signing.pem", tmp / "smollm.sig")
    config = gateway_config(tmp, [{"name": "smollm", "routing": {"timeout": {"total": "120s"}},
                                   "deployments": [
        {"name": "smollm-local", "version": "q4_1",
         "local": {"gguf": str(gguf), "sha256": digest, "ctx_size": 1024, "threads": 2,
                   "default_max_tokens": 24,
                   "signature": {"bundle": "smollm.sig", "public_key": "signing.pub"}}}]}])
    server = GatewayServer(config, log_dir=tmp / "logs")
    yield server
    server.close()


def test_chat_through_the_real_model(model_gateway: GatewayServer,
                                     smollm: tuple[Path, str]) -> None:
    with openai.OpenAI(base_url=model_gateway.v1, api_key=model_gateway.create_key(),
                       max_retries=0, timeout=120) as client:
        reply = client.chat.completions.create(
            model="smollm", messages=[{"role": "user", "content": "Name a colour."}],
            max_tokens=12, temperature=0, seed=1)
        assert reply.usage is not None and 0 < reply.usage.completion_tokens <= 12
        assert reply.usage.prompt_tokens > 3
        assert isinstance(reply.choices[0].message.content, str)
        assert reply.choices[0].message.content.strip()

        chunks = list(client.chat.completions.create(
            model="smollm", messages=[{"role": "user", "content": "Count to five."}],
            max_tokens=16, temperature=0, stream=True))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(chunks) > 3 and text.strip()
    # What serves it, verified by its pin and its signature, is told in /v1/models.
    listed = httpx.get(model_gateway.v1 + "/models", headers={
        "Authorization": f"Bearer {model_gateway.create_key()}"}).json()["data"]
    assert listed[0]["deployments"] == [{"name": "smollm-local", "version": "q4_1",
                                         "digest": f"sha256:{smollm[1]}"}]
    metrics = httpx.get(model_gateway.base_url + "/metrics").text
    assert re.search(r'gen_ai_client_token_usage_count\{gen_ai_operation_name="chat",'
                     r'gen_ai_request_model="smollm",gen_ai_token_type="output"\} [1-9]', metrics)


def test_a_request_without_max_tokens_is_capped(model_gateway: GatewayServer) -> None:
    """Was: a request without max_tokens generated until the context was full (two minutes
    on two cores for a base model that never stops)."""
    with openai.OpenAI(base_url=model_gateway.v1, api_key=model_gateway.create_key(),
                       max_retries=0, timeout=120) as client:
        reply = client.chat.completions.create(
            model="smollm", temperature=0, seed=1, messages=[
                {"role": "user", "content": "Write a very long story about a dragon."}])
        asked = client.chat.completions.create(
            model="smollm", temperature=0, seed=1, max_tokens=40, messages=[
                {"role": "user", "content": "Write a very long story about a dragon."}])
    assert reply.usage is not None and 0 < reply.usage.completion_tokens <= 24
    assert reply.choices[0].finish_reason == "length"
    # A cap the client sets is the client's.
    assert asked.usage is not None and 24 < asked.usage.completion_tokens <= 40


def test_a_killed_model_server_is_restarted(model_gateway: GatewayServer) -> None:
    server = model_gateway.gateway.local_servers[0]
    old_pid = server.pid
    assert old_pid is not None
    os.kill(old_pid, signal.SIGKILL)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if server.pid != old_pid and httpx.get(model_gateway.base_url + "/readyz").status_code \
                == 200:
            break
        time.sleep(0.2)
    assert server.pid != old_pid and server.restarts == 1
    with openai.OpenAI(base_url=model_gateway.v1, api_key=model_gateway.create_key(),
                       max_retries=0, timeout=120) as client:
        reply = client.completions.create(model="smollm", prompt="The sky is", max_tokens=4)
    assert reply.choices[0].text


def test_a_digest_mismatch_refuses_to_serve(tmp_path: Path, smollm: tuple[Path, str]) -> None:
    gguf, digest = smollm
    wrong = ("0" if digest[0] != "0" else "1") + digest[1:]
    config = gateway_config(tmp_path, [{"name": "smollm", "deployments": [
        {"local": {"gguf": str(gguf), "sha256": wrong}}]}])
    with pytest.raises(ArtifactIntegrityError) as err:
        GatewayServer(config)
    assert f"has SHA-256 {digest}" in err.value.message and wrong in err.value.message


def test_a_signature_by_another_key_refuses_to_serve(tmp_path: Path,
                                                     smollm: tuple[Path, str]) -> None:
    gguf, _ = smollm
    generate_key_pair(tmp_path / "ours.pem", tmp_path / "ours.pub")
    generate_key_pair(tmp_path / "theirs.pem", tmp_path / "theirs.pub")
    sign_model(gguf, tmp_path / "theirs.pem", tmp_path / "smollm.sig")
    config = gateway_config(tmp_path, [{"name": "smollm", "deployments": [
        {"local": {"gguf": str(gguf), "signature": {"bundle": "smollm.sig",
                                                     "public_key": "ours.pub"}}}]}])
    with pytest.raises(ArtifactIntegrityError) as err:
        GatewayServer(config)
    assert "does not match its signature" in err.value.message
    assert "refusing to serve it" in err.value.message


def test_one_failed_start_stops_every_other_model_server(tmp_path: Path,
                                                       smollm: tuple[Path, str]) -> None:
    gguf, digest = smollm
    local = {"gguf": str(gguf), "sha256": digest, "ctx_size": 256}
    config = gateway_config(tmp_path, [{"name": "smollm", "deployments": [
        {"name": "good", "local": {**local, "startup_timeout": "60s"}},
        {"name": "broken", "local": {**local, "args": ["--no-such-flag"]}},
    ]}])

    gateway = build_gateway(config, log_dir=tmp_path / "logs")
    thread = LoopThread()
    try:
        with pytest.raises(UpstreamUnavailableError, match="broken exited with code"):
            thread.call(start_server(gateway, "127.0.0.1", 0))
    finally:
        thread.stop()
    good = gateway.local_servers[0]
    if good.pid is not None:  # it had been started: it must be gone now
        with pytest.raises(ProcessLookupError):
            os.kill(good.pid, 0)
    assert gateway.store.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


def test_demo_command_serves_and_reuses_its_state(tmp_path: Path) -> None:
    keys = []
    for _ in range(2):
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "ironhold", "demo", "--port", str(port),
             "--data-dir", str(tmp_path / "demo")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            assert process.stdout is not None
            output = ""
            deadline = time.monotonic() + 120
            while "api_key=" not in output and time.monotonic() < deadline:
                output += process.stdout.readline()
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
            key = re.search(r'api_key="(ih-[^"]+)"', output)
            assert key, output
            keys.append(key.group(1))
            with openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key.group(1),
                               max_retries=0, timeout=120) as client:
                # The README's request: no max_tokens, an instruction model that answers.
                reply = client.chat.completions.create(
                    model="smollm2-135m", messages=[{"role": "user", "content": "Say hello"}])
            assert (reply.choices[0].message.content or "").strip()
            assert reply.usage is not None and reply.usage.completion_tokens <= 256
        finally:
            process.send_signal(signal.SIGINT)
            assert process.wait(timeout=30) == 0
            for stream in (process.stdout, process.stderr):
                if stream:
                    stream.close()
    assert keys[0] == keys[1]  # the second run reuses the demo key
