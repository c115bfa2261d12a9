"""``ironhold audit``: verify the tamper-evident log offline, export it, save checkpoints."""

from __future__ import annotations

import base64
import sys
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, BinaryIO

import orjson
import typer
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from ironhold.cli.common import ConfigOption, fail, load_or_exit
from ironhold.core.errors import IronholdError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from ironhold.audit.store import AuditStore
    from ironhold.config import Config

app = typer.Typer(help="Verify, export and anchor the tamper-evident audit log.",
                  no_args_is_help=True)

PublicKeyOption = Annotated[Path | None, typer.Option(
    "--public-key", help="The audit key's public half (PEM); default: derived from "
    "audit.signing_key, for auditors who hold only the public key.")]


def _open(config: Config) -> AuditStore:
    from ironhold.audit.store import AuditStore
    from ironhold.store.sql import open_sql_store

    try:
        store = open_sql_store(config.state.url, config.base_dir)
    except IronholdError as exc:
        fail(exc.message)
    return AuditStore(store.engine)


def _public_key(config: Config, path: Path | None) -> Ed25519PublicKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

    from ironhold.bootstrap import audit_signing_key_path

    path = path or audit_signing_key_path(config)
    try:
        pem = path.read_bytes()
    except OSError as exc:
        fail(f"cannot read the audit key {path}: {exc.strerror}; give --public-key")
    key: object
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError:
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError):
            fail(f"{path} is not a PEM Ed25519 key")
    if isinstance(key, Ed25519PrivateKey):
        key = key.public_key()
    if not isinstance(key, Ed25519PublicKey):
        fail(f"{path} is not an Ed25519 key")
    return key


@app.command()
def verify(
    config: ConfigOption,
    checkpoint: Annotated[list[Path] | None, typer.Option(
        "--checkpoint", help="A checkpoint saved outside the log (`ironhold audit "
        "checkpoint`); the log must still match it. Repeatable.")] = None,
    public_key: PublicKeyOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Recompute every record's hash, the Merkle tree and every signed checkpoint, offline.
    Exits 1 and names the first bad record if anything was changed, removed or reordered."""
    from ironhold.audit.checkpoint import Checkpoint, CheckpointFormatError
    from ironhold.audit.verify import verify_log

    cfg = load_or_exit(config)
    key = _public_key(cfg, public_key)
    anchors = []
    for path in checkpoint or []:
        try:
            anchors.append(Checkpoint.from_dict(orjson.loads(path.read_bytes())))
        except OSError as exc:
            fail(f"cannot read {path}: {exc.strerror}", code=2)
        except (orjson.JSONDecodeError, CheckpointFormatError) as exc:
            fail(f"{path} is not a checkpoint: {exc}", code=2)
    store = _open(cfg)
    err = Console(stderr=True)
    with Progress(SpinnerColumn(), TextColumn("verifying: {task.completed:,} records"),
                  TimeElapsedColumn(), console=err, transient=True,
                  disable=as_json or not err.is_terminal) as bar:
        task = bar.add_task("verify", total=None)
        report = verify_log(store, key, anchors,
                            lambda done: bar.update(task, completed=done))
    store.engine.dispose()
    if as_json:
        problem = report.problem
        typer.echo(orjson.dumps({
            "ok": report.ok, "records": report.records, "root": report.root.hex() or None,
            "checkpoints_verified": report.checkpoints, "covered": report.covered,
            "problem": None if problem is None else {
                "message": problem.message, "seq": problem.seq,
                "request_id": problem.request_id},
            "warnings": report.warnings}).decode())
    elif report.problem is not None:
        typer.secho(f"TAMPERED: {report.problem.message}", fg=typer.colors.RED, err=True)
    else:
        typer.echo(f"ok: {report.records:,} records, root {report.root.hex()}, "
                   f"{report.checkpoints} signed checkpoints verified")
        for warning in report.warnings:
            typer.secho(f"note: {warning}", fg=typer.colors.YELLOW, err=True)
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def export(
    config: ConfigOption,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write here instead of standard output.")] = None,
    start: Annotated[int, typer.Option("--from", min=0, help="First sequence number.")] = 0,
    end: Annotated[int | None, typer.Option(
        "--to", min=0, help="Stop before this sequence number.")] = None,
) -> None:
    """Write the records as JSON Lines: one ``{"seq", "leaf_hash", "record"}`` per line, in
    order (leaf hash in base64). The record is the exact text its leaf hash covers."""
    cfg = load_or_exit(config)
    store = _open(cfg)
    written = 0
    with ExitStack() as stack:
        sink: BinaryIO = (stack.enter_context(output.open("wb")) if output is not None
                          else sys.stdout.buffer)
        for row in store.records(start, end):
            sink.write(b'{"seq":%d,"leaf_hash":"%s","record":%s}\n'
                       % (row.seq, base64.b64encode(row.leaf_hash), row.record.encode()))
            written += 1
    store.engine.dispose()
    if output is not None:
        typer.echo(f"{written:,} records written to {output}", err=True)


@app.command("checkpoint")
def show_checkpoint(
    config: ConfigOption,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Save it to this file (keep it outside the gateway's "
        "reach: it is what `audit verify --checkpoint` checks against).")] = None,
) -> None:
    """Print the newest signed checkpoint as JSON."""
    cfg = load_or_exit(config)
    store = _open(cfg)
    newest = store.checkpoints(limit=1)
    store.engine.dispose()
    if not newest:
        fail("the log has no signed checkpoint yet (one is signed every "
             "audit.checkpoint_interval once records exist)")
    data = orjson.dumps(newest[0].as_dict(), option=orjson.OPT_INDENT_2)
    if output is not None:
        output.write_bytes(data + b"\n")
        typer.echo(f"checkpoint of size {newest[0].size} saved to {output}", err=True)
    else:
        typer.echo(data.decode())
