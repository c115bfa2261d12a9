"""``ironhold model``: sign a model file and verify it (OpenSSF model-signing, elliptic-curve
keys), the way a managed local model is verified before it serves."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ironhold.cli.common import fail
from ironhold.core.errors import ArtifactIntegrityError

app = typer.Typer(help="Sign and verify model files (OpenSSF model-signing).",
                  no_args_is_help=True)


@app.command("keygen")
def keygen(
    private_key: Annotated[Path, typer.Argument(help="Where to write the private key (PEM).")],
    public_key: Annotated[Path, typer.Argument(help="Where to write the public key (PEM).")],
) -> None:
    """Make a P-256 key pair for signing models. Keep the private key out of the repository
    (and out of the gateway's machine); the config names only the public one."""
    from ironhold.upstream.signatures import generate_key_pair

    if private_key.exists():
        fail(f"{private_key} exists; not overwriting a key")
    generate_key_pair(private_key, public_key)
    typer.echo(f"wrote {private_key} (private, mode 600) and {public_key} (public)")


@app.command("sign")
def sign(
    file: Annotated[Path, typer.Argument(help="The model file (e.g. a GGUF).")],
    key: Annotated[Path, typer.Option("--key", help="The private key (PEM, elliptic curve).")],
    output: Annotated[Path | None, typer.Option(
        help="Where to write the signature (default: FILE.sig).")] = None,
) -> None:
    """Sign a model file: writes a Sigstore bundle (FILE.sig) naming the file's digest."""
    from ironhold.upstream.signatures import sign_model, signed_digest

    signature = output or file.with_name(file.name + ".sig")
    try:
        sign_model(file, key, signature)
        digest = signed_digest(signature)
    except ArtifactIntegrityError as exc:
        fail(exc.message)
    typer.echo(f"signed {file} ({digest}): {signature}")


@app.command("verify")
def verify(
    file: Annotated[Path, typer.Argument(help="The model file.")],
    signature: Annotated[Path, typer.Option(help="The signature (FILE.sig).")],
    public_key: Annotated[Path, typer.Option(help="The signer's public key (PEM).")],
) -> None:
    """Check a model file against its signature and the signer's public key, as the gateway
    does before serving it. Exit 0 when it verifies, 1 (with the reason) when it does not."""
    from ironhold.upstream.signatures import verify_model

    try:
        digest = verify_model(file, signature, public_key)
    except ArtifactIntegrityError as exc:
        fail(exc.message)
    typer.echo(f"verified: {file} ({digest}) was signed by the holder of {public_key}")
