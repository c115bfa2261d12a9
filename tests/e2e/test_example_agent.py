"""The example agent (examples/agent/agent.py) against ``ironhold demo``: a passport-holding
agent runs the openai SDK's tool-calling loop on the real local model through /v1, and its
tools through /mcp. The demo's policy lets it read the shared folder, never write to it; the
audit log holds the delegation and every tool call, the refusal included."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.servers import free_port

pytestmark = pytest.mark.model

AGENT = Path(__file__).resolve().parents[2] / "examples" / "agent" / "agent.py"


def audit_records(config: Path) -> list[dict[str, Any]]:
    exported = subprocess.run([sys.executable, "-m", "ironhold", "audit", "export", "-c",
                               str(config)], capture_output=True, text=True, timeout=60,
                              check=True)
    return [json.loads(line)["record"] for line in exported.stdout.splitlines()]


def test_the_example_agent_reads_but_may_not_write(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "demo"
    demo = subprocess.Popen([sys.executable, "-m", "ironhold", "demo", "--port", str(port),
                             "--data-dir", str(data)], stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert demo.stdout is not None
        output, deadline = "", time.monotonic() + 120
        while "Tools (MCP)" not in output and time.monotonic() < deadline:
            output += demo.stdout.readline()
            assert demo.poll() is None, "the demo exited"
        key = re.search(r'api_key="(ih-[^"]+)"', output)
        assert key, output
        assert f"http://127.0.0.1:{port}/mcp" in output  # the demo says where its tools are
        run = subprocess.run([sys.executable, str(AGENT), "--base-url",
                              f"http://127.0.0.1:{port}", "--key", key.group(1)],
                             capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stderr
        lines = run.stdout.splitlines()
        assert lines[0].startswith("passport pp_") and "agent:report-agent" in lines[0]
        # The policy never lets an agent write, so the tool is not even listed to it.
        assert lines[1] == ("tools this agent may use: files.list_files, files.read_file, "
                            "files.search")
        assert any(line.startswith("step 1: files.list_files") and "reports/q3.md" in line
                   for line in lines)
        assert any(line.startswith("step 3: files.write_file") and "REFUSED (policy_denied)"
                   in line for line in lines)
        assert lines[-1].startswith("answer: ")
    finally:
        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=30) == 0
        if demo.stdout:
            demo.stdout.close()
    records = audit_records(data / "ironhold.yaml")
    delegation = next(r for r in records if r["kind"] == "event" and r["action"] == "delegate")
    tools = [r for r in records if r["kind"] == "tool"]
    chain = delegation["target"]["chain"]
    assert all(r["principal"]["chain"] == chain for r in tools)
    # Every call that reached the tool server was written ahead, and a clean stop wrote how
    # each ended; the refused write never reached it.
    intents = {r["request_id"]: r for r in records if r["kind"] == "tool_intent"}
    assert intents and set(intents) <= {r["request_id"] for r in tools}
    assert all(r["tool"] != "write_file" for r in intents.values())
    assert tools[0]["tool"] == "list_files"
    assert tools[0]["outcome"] == "ok"
    assert tools[0]["policy"]["policies"] == ["everyone-reads-the-shared-folder"]
    write = next(r for r in tools if r["tool"] == "write_file")
    assert write["outcome"] == "denied" and write["error"] == "policy_denied"
    assert write["policy"]["allowed"] is False
    assert not (data / "shared" / "reports" / "q3-summary.md").exists()
    verified = subprocess.run([sys.executable, "-m", "ironhold", "audit", "verify", "-c",
                               str(data / "ironhold.yaml")], capture_output=True, text=True,
                              timeout=60)
    assert verified.returncode == 0, verified.stdout + verified.stderr
