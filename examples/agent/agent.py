"""An agent that works through Ironhold: it holds a passport, reads its tools from Ironhold's
MCP endpoint, and runs the official ``openai`` SDK's tool-calling loop against Ironhold's chat
endpoint. Every model call and every tool call is decided by policy, guarded and audited.

    make demo                                 # in one terminal: the demo gateway
    python examples/agent/agent.py            # in another: the agent, with the demo's key

The demo's policy lets an agent read the shared folder but never write to it, so the last step
of the plan (saving a summary) is refused, and the refusal is in the audit log beside the reads.

Small models rarely choose tools on their own. By default the agent follows a plan: for each
step it names the tool (``tool_choice``) and the model writes the arguments, which llama.cpp
constrains to the tool's input schema. ``--auto`` lets the model choose (for larger models).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import httpx
import httpx2
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types import TextContent
from openai import OpenAI

from mcp import Client

#: The plan: the tool for each step, and what the agent asks the model at that step.
PLAN = [
    ("files.list_files", "List the files in the shared folder."),
    ("files.read_file", "Read the Q3 report: its path is reports/q3.md."),
    ("files.write_file", "Save a one-line summary of the Q3 report to reports/q3-summary.md."),
]
TASK = "Summarise the Q3 report from the shared folder, and save the summary next to it."


def passport(base_url: str, key: str, agent: str) -> dict[str, Any]:
    """Exchange the key for a passport: the agent acts for the key's holder, no wider."""
    answer = httpx.post(f"{base_url}/oauth/token", timeout=30, data={
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": key,
        "actor_token": agent,
        "actor_token_type": "urn:ironhold:params:oauth:token-type:agent",
        "expires_in": "600",
    })
    if answer.status_code != 200:
        sys.exit(f"the gateway refused the passport: {answer.text}")
    issued: dict[str, Any] = answer.json()
    return issued


def openai_name(tool: str) -> str:
    """OpenAI function names cannot hold dots: ``files.read_file`` → ``files__read_file``."""
    return tool.replace(".", "__")


async def run(args: argparse.Namespace) -> int:
    issued = passport(args.base_url, args.key, args.agent)
    token = issued["access_token"]
    print(f"passport {issued['passport_id']}: {' → '.join(issued['chain'])}, "
          f"expires in {issued['expires_in']}s")
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=120)
    async with http, Client(streamable_http_client(f"{args.base_url}/mcp", http_client=http),
                            cache=None) as tools:
        listed = (await tools.list_tools()).tools
        print(f"tools this agent may use: {', '.join(t.name for t in listed)}")
        by_name = {openai_name(t.name): t.name for t in listed}
        functions = [{"type": "function", "function": {
            "name": openai_name(t.name), "description": t.description or "",
            "parameters": t.input_schema}} for t in listed]
        # The write tool is not even listed to an agent the policy never lets write: offer it
        # anyway, so the plan's last step shows the refusal.
        if "files__write_file" not in by_name:
            by_name["files__write_file"] = "files.write_file"
            functions.append({"type": "function", "function": {
                "name": "files__write_file", "description": "Write a text file.",
                "parameters": {"type": "object", "required": ["path", "content"],
                               "properties": {"path": {"type": "string"},
                                              "content": {"type": "string"}}}}})
        model = OpenAI(base_url=f"{args.base_url}/v1", api_key=token, max_retries=0,
                       timeout=300)
        messages: list[dict[str, Any]] = [
            {"role": "system", "content": "You are a careful assistant with file tools."},
            {"role": "user", "content": args.task}]
        steps = [(None, None)] * args.max_rounds if args.auto else PLAN
        for number, (tool, ask) in enumerate(steps, 1):
            if ask:
                messages.append({"role": "user", "content": ask})
            choice: Any = ("auto" if tool is None else
                           {"type": "function", "function": {"name": openai_name(tool)}})
            reply = model.chat.completions.create(
                model=args.model, messages=messages, tools=functions,  # type: ignore[arg-type]
                tool_choice=choice, max_tokens=args.max_tokens, temperature=0)
            message = reply.choices[0].message
            if not message.tool_calls:
                print(f"step {number}: the model answered without a tool")
                messages.append({"role": "assistant", "content": message.content or ""})
                break
            # ``content`` stays (empty): chat templates read it on every message.
            messages.append({"role": "assistant", "content": message.content or "",
                             "tool_calls": [c.model_dump() for c in message.tool_calls]})
            for call in message.tool_calls:
                name = by_name.get(call.function.name, call.function.name)
                try:
                    arguments = json.loads(call.function.arguments or "{}")
                except json.JSONDecodeError:
                    arguments = {}
                outcome = await call_tool(tools, name, arguments)
                shown = outcome.replace("\n", " | ")[:160]
                print(f"step {number}: {name}({json.dumps(arguments)[:120]}) → {shown}")
                if name == "files.list_files" and not outcome.startswith(("REFUSED", "ERROR")):
                    # What the agent now knows narrows what it offers the model next: a
                    # small model picks one of the listed paths instead of inventing one.
                    narrow(functions, "files__read_file", outcome.splitlines())
                messages.append({"role": "tool", "tool_call_id": call.id, "content": outcome})
        final = model.chat.completions.create(
            model=args.model, max_tokens=args.max_tokens, temperature=0,
            messages=[*messages, {"role": "user", "content": "Now give the summary."}])
        print(f"answer: {(final.choices[0].message.content or '').strip()}")
    return 0


def narrow(functions: list[dict[str, Any]], name: str, paths: list[str]) -> None:
    for function in functions:
        if function["function"]["name"] == name and paths:
            schema = json.loads(json.dumps(function["function"]["parameters"]))
            schema.setdefault("properties", {})["path"] = {"type": "string", "enum": paths}
            function["function"]["parameters"] = schema


async def call_tool(tools: Client, name: str, arguments: dict[str, Any]) -> str:
    """The tool's text, or why Ironhold (or the tool) refused: the model reads either."""
    try:
        result = await tools.call_tool(name, arguments)
    except MCPError as refused:
        data = refused.error.data if isinstance(refused.error.data, dict) else {}
        return f"REFUSED ({data.get('code', refused.code)}): {refused.message}"
    text = "\n".join(c.text for c in result.content if isinstance(c, TextContent))
    return f"ERROR: {text}" if result.is_error else text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8080")
    parser.add_argument("--key", help="An Ironhold API key (default: the demo's key, "
                                      "from .ironhold/demo/demo-key).")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--agent", default="report-agent", help="The agent's name.")
    parser.add_argument("--task", default=TASK)
    parser.add_argument("--auto", action="store_true",
                        help="Let the model choose its tools instead of following the plan.")
    parser.add_argument("--max-rounds", type=int, default=6)
    parser.add_argument("--max-tokens", type=int, default=96)
    args = parser.parse_args()
    if args.key is None:
        stored = Path(".ironhold/demo/demo-key")
        if not stored.exists():
            sys.exit("no --key, and no demo key at .ironhold/demo/demo-key: run `make demo`")
        args.key = stored.read_text().strip()
    sys.exit(asyncio.run(run(args)))


if __name__ == "__main__":
    main()
