"""``ironhold mcp``: the MCP tool gateway of a running gateway (through its admin API): its tool
servers, its pinned tools, and approving a quarantined tool's changed definition."""

from __future__ import annotations

import urllib.parse
from typing import Annotated, Any

import typer

from ironhold.cli.common import KeyOption, UrlOption, admin_call, fail

app = typer.Typer(help="The MCP tool gateway: tool servers, pinned tools, quarantine.",
                  no_args_is_help=True)


@app.command("status")
def status(url: UrlOption, key: KeyOption) -> None:
    """Each tool server (connected or not, its tools) and each pinned tool's status."""
    answer = admin_call(url, key, "GET", "/admin/mcp")
    if not answer["servers"]:
        fail(f"the gateway at {url} has no MCP tool servers (mcp.servers)", 1)
    for s in answer["servers"]:
        error = f" - {s['last_error']}" if s["last_error"] else ""
        typer.echo(f"server {s['name']} ({s['transport']}): {s['state']}, {s['tools']} tools, "
                   f"{s['reconnects']} reconnects{error}")
    for t in answer["tools"]:
        typer.echo(_tool_line(t))


def _tool_line(t: dict[str, Any]) -> str:
    line = f"tool {t['name']}: {t['status']} (pinned {t['digest'][:12]})"
    if t["status"] == "quarantined":
        line += (f", changed to {t['pending_digest'][:12]}: approve with "
                 f"`ironhold mcp approve {t['name']} --digest {t['pending_digest']}`")
    return line


@app.command("show")
def show(
    tool: Annotated[str, typer.Argument(help="The tool, as agents see it (server.tool).")],
    url: UrlOption,
    key: KeyOption,
) -> None:
    """A pinned tool's approved definition and, if quarantined, the changed one."""
    answer = admin_call(url, key, "GET", "/admin/mcp")
    found = [t for t in answer["tools"] if t["name"] == tool]
    if not found:
        fail(f"no tool {tool!r} has been seen at {url}", 1)
    t = found[0]
    typer.echo(_tool_line(t))
    typer.echo(f"approved description: {t['definition'].get('description')!r}")
    if t["pending_definition"] is not None:
        typer.echo(f"changed description:  {t['pending_definition'].get('description')!r}")
        if t["pending_definition"].get("inputSchema") != t["definition"].get("inputSchema"):
            typer.echo("the input schema changed too")


@app.command("approve")
def approve(
    tool: Annotated[str, typer.Argument(help="The quarantined tool (server.tool).")],
    url: UrlOption,
    key: KeyOption,
    digest: Annotated[str | None, typer.Option(
        help="Approve only this definition (its SHA-256, as `ironhold mcp status` shows): a "
             "definition that changed again since you read it stays quarantined.")] = None,
) -> None:
    """Accept a quarantined tool's changed definition: it is listed and callable again."""
    path = f"/admin/mcp/tools/{urllib.parse.quote(tool, safe='')}/approve"
    pin = admin_call(url, key, "POST", path, {"digest": digest} if digest else {})
    typer.echo(f"{pin['name']}: approved {pin['digest'][:12]} (by {pin['approved_by']})")
