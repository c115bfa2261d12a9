"""``ironhold demo``: the gateway in front of the bundled SmolLM2-135M-Instruct model, zero
set-up."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
import yaml

from ironhold.cli.common import fail
from ironhold.core.errors import IronholdError

if TYPE_CHECKING:
    from ironhold.identity.keys import KeyService

DEMO_MODEL = "smollm2-135m"
_KEY_FILE = "demo-key"
#: The demo's policy: the model for everyone; the shared folder's tools read by anyone, written
#: only by a key itself, never by an agent acting for it (examples/agent/agent.py shows both).
DEMO_POLICY = """\
@id("demo-model-for-everyone")
permit(principal, action in Ironhold::Action::"model_use", resource);

@id("anyone-delegates")
permit(principal, action == Ironhold::Action::"delegate", resource);

@id("admins-administer")
permit(principal, action in Ironhold::Action::"admin", resource) when { principal.admin };

@id("everyone-reads-the-shared-folder")
permit(principal, action == Ironhold::Action::"call_tool", resource)
when { [Ironhold::Tool::"files.list_files", Ironhold::Tool::"files.read_file",
        Ironhold::Tool::"files.search"].contains(resource) };

@id("keys-write")
permit(principal is Ironhold::ServiceKey, action == Ironhold::Action::"call_tool",
       resource == Ironhold::Tool::"files.write_file");

@id("agents-never-write")
forbid(principal is Ironhold::Agent, action == Ironhold::Action::"call_tool",
       resource == Ironhold::Tool::"files.write_file");
"""


def demo(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8080,
    data_dir: Annotated[Path, typer.Option(
        help="Where the demo keeps its config, SQLite state and key.")] = Path(".ironhold/demo"),
    model_cache: Annotated[Path | None, typer.Option(
        hidden=True, help="Unused: the model is read where its package is installed.")] = None,
) -> None:
    """Serve the bundled SmolLM2-135M-Instruct model through the gateway and print how to call
    it. Requests that set no max_tokens get 256 at most."""
    from ironhold.api.server import run_server
    from ironhold.bootstrap import build_gateway, open_identity
    from ironhold.config import load_config
    from ironhold.telemetry.logs import configure_logging
    from ironhold.upstream.artifacts import demo_model_path

    say = _Say()
    try:
        import llama_cpp  # noqa: F401
    except ImportError:
        fail("llama.cpp's server is not installed: pip install 'ironhold[local]' "
             "(or run make demo)")
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    say.step("model: SmolLM2-135M-Instruct Q4_1")
    try:
        gguf, digest = demo_model_path()
    except (IronholdError, OSError, ValueError) as exc:
        fail(f"cannot prepare the demo model: {exc}")
    say.done(f"{gguf.name} ({gguf.stat().st_size / 1e6:.0f} MB, pinned SHA-256 {digest[:12]}…)")

    config_path = data_dir / "ironhold.yaml"
    (data_dir / "policy.cedar").write_text(DEMO_POLICY)
    config_path.write_text(yaml.safe_dump({
        "server": {"host": host, "port": port},
        "state": {"url": f"sqlite:///{data_dir / 'ironhold.db'}"},
        "logging": {"level": "warning"},
        "policy": {"files": ["policy.cedar"]},
        "models": [{"name": DEMO_MODEL, "deployments": [
            {"name": "smollm2-local", "local": {"gguf": str(gguf), "sha256": digest}}]}],
        # A tool server over a shared folder, started (and restarted) by the gateway.
        "mcp": {"servers": [{"name": "files", "command": [
            sys.executable, "-m", "ironhold.simulator.tools", "--root",
            str(data_dir / "shared")]}]},
    }, sort_keys=False))
    try:
        config = load_config(config_path)
    except IronholdError as exc:
        fail(exc.message)

    say.step("key: reusing or creating the demo key")
    with open_identity(config) as identity:
        key = _demo_key(data_dir, identity.keys)
    say.done(f"stored in {data_dir / _KEY_FILE}")

    configure_logging(config.logging.level, config.logging.format)
    say.step("gateway: verifying the model and starting llama.cpp's server")
    gateway = build_gateway(config, log_dir=data_dir / "logs")

    def ready(bound: int) -> None:
        say.done("ready")
        _print_usage(host, bound, key)

    try:
        run_server(gateway, host, port, on_ready=ready)
    except IronholdError as exc:
        fail(exc.message)
    except OSError as exc:
        fail(f"cannot serve on {host}:{port}: {exc}")


def _demo_key(data_dir: Path, service: KeyService) -> str:
    path = data_dir / _KEY_FILE
    if path.exists():
        secret = path.read_text().strip()
        key = service.find(secret)
        if key is not None and key.active:
            return secret
    _, secret = service.create("demo")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    return secret


class _Say:
    def __init__(self) -> None:
        self._started = time.monotonic()

    def step(self, text: str) -> None:
        typer.secho(f"• {text}", fg=typer.colors.CYAN, err=True)
        self._started = time.monotonic()

    def done(self, text: str) -> None:
        typer.secho(f"  ✓ {text} ({time.monotonic() - self._started:.1f}s)",
                    fg=typer.colors.GREEN, err=True)


def _print_usage(host: str, port: int, key: str) -> None:
    base = f"http://{host}:{port}/v1"
    typer.echo(f"""
Ironhold is serving {DEMO_MODEL} at {base}  (Ctrl-C to stop)

  curl {base}/chat/completions \\
    -H "Authorization: Bearer {key}" -H "Content-Type: application/json" \\
    -d '{{"model": "{DEMO_MODEL}", "messages": [{{"role": "user", "content": "Say hello"}}]}}'

  from openai import OpenAI
  client = OpenAI(base_url="{base}", api_key="{key}")
  reply = client.chat.completions.create(
      model="{DEMO_MODEL}", messages=[{{"role": "user", "content": "Say hello"}}])
  print(reply.choices[0].message.content)

Tools (MCP): http://{host}:{port}/mcp  (the shared folder's tools; an agent may read, not write)
  python examples/agent/agent.py --base-url http://{host}:{port} --key {key}

Metrics: http://{host}:{port}/metrics   Readiness: http://{host}:{port}/readyz
Attack it: IRONHOLD_REDTEAM_KEY={key} ironhold redteam --base-url {base} --model {DEMO_MODEL}
""")
