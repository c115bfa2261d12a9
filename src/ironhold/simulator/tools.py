"""A small MCP tool server over one folder, for the demo, the example agent and the MCP
benchmark (made with the official ``mcp`` SDK): ``list_files``, ``read_file``, ``search``,
``write_file`` and ``echo``. Paths are relative to the folder and never leave it.

    python -m ironhold.simulator.tools --root DIR            # stdio (a gateway starts it)
    python -m ironhold.simulator.tools --root DIR --http 9000  # Streamable HTTP on /mcp
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mcp.server.mcpserver import MCPServer

__all__ = ["SEED", "build_server", "main"]

#: What an empty folder is given, so the demo has something to read.
SEED = {
    "reports/q3.md": "# Q3 report\n\nRevenue grew 12% to 4.1M. Churn fell to 2.3%. "
                     "The new EU region launched in August.\n",
    "reports/q4-plan.md": "# Q4 plan\n\nHire two support engineers. Ship the audit export. "
                          "Keep churn under 2.5%.\n",
    "notes/todo.md": "- renew the TLS certificate\n- review the Q3 report\n",
}
_MAX_READ = 64 * 1024


def build_server(root: Path) -> MCPServer:
    server = MCPServer("ironhold-demo-files", instructions="Files of the demo team.")

    def inside(path: str) -> Path:
        target = (root / path.lstrip("/")).resolve()
        if not target.is_relative_to(root):
            raise ValueError(f"{path!r} is outside the shared folder")
        return target

    @server.tool(description="List every file in the shared folder.")
    def list_files() -> list[str]:
        return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())

    @server.tool(description="Read a text file of the shared folder, by its relative path.")
    def read_file(path: str) -> str:
        target = inside(path)
        if not target.is_file():
            raise ValueError(f"no file {path!r}")
        return target.read_text(encoding="utf-8", errors="replace")[:_MAX_READ]

    @server.tool(description="The files whose text contains a word or phrase.")
    def search(text: str) -> list[str]:
        return sorted(str(p.relative_to(root)) for p in root.rglob("*")
                      if p.is_file() and text.lower() in p.read_text(errors="replace").lower())

    @server.tool(description="Write (or replace) a text file of the shared folder.")
    def write_file(path: str, content: str) -> str:
        target = inside(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
        return f"wrote {len(content)} characters to {path}"

    @server.tool(description="Echo the text back (for measuring the gateway's overhead).")
    def echo(text: str) -> str:
        return text

    return server


def seed(root: Path) -> None:
    if any(root.iterdir()):
        return
    for name, text in SEED.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, required=True, help="The shared folder.")
    parser.add_argument("--http", type=int, default=None, help="Serve Streamable HTTP on this "
                        "port (127.0.0.1) instead of stdio.")
    args = parser.parse_args()
    root = args.root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    seed(root)
    server = build_server(root)
    if args.http is None:
        server.run()
    else:
        server.run("streamable-http", host="127.0.0.1", port=args.http)


if __name__ == "__main__":
    main()
