"""Model signatures with real keys: ``ironhold model keygen|sign|verify`` as an operator runs
them, and what the gateway says of a file that does not match."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ironhold.config import parse_config
from ironhold.core.errors import ArtifactIntegrityError, ConfigError
from ironhold.upstream.artifacts import sha256_file
from ironhold.upstream.signatures import generate_key_pair, sign_model, verify_model


def ironhold(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ironhold", *args], capture_output=True,
                          text=True, timeout=60)


def test_sign_and_verify_with_the_command(tmp_path: Path) -> None:
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF" + bytes(range(256)) * 64)
    private, public = tmp_path / "keys" / "signing.pem", tmp_path / "keys" / "signing.pub"
    made = ironhold("model", "keygen", str(private), str(public))
    assert made.returncode == 0, made.stderr
    assert private.stat().st_mode & 0o077 == 0  # the private key is its owner's alone
    assert ironhold("model", "keygen", str(private), str(public)).returncode == 1
    signed = ironhold("model", "sign", str(model), "--key", str(private))
    assert signed.returncode == 0, signed.stderr
    assert f"sha256:{sha256_file(model)}" in signed.stdout
    assert (tmp_path / "model.gguf.sig").is_file()
    checked = ironhold("model", "verify", str(model), "--signature",
                       str(tmp_path / "model.gguf.sig"), "--public-key", str(public))
    assert checked.returncode == 0 and "verified" in checked.stdout
    model.write_bytes(model.read_bytes() + b"!")
    tampered = ironhold("model", "verify", str(model), "--signature",
                        str(tmp_path / "model.gguf.sig"), "--public-key", str(public))
    assert tampered.returncode == 1
    assert f"its SHA-256 is {sha256_file(model)}, but the signature vouches for" \
        in tampered.stderr


def test_another_key_or_no_bundle_is_refused(tmp_path: Path) -> None:
    model = tmp_path / "model.gguf"
    model.write_bytes(b"GGUF weights")
    generate_key_pair(tmp_path / "a.pem", tmp_path / "a.pub")
    generate_key_pair(tmp_path / "b.pem", tmp_path / "b.pub")
    sign_model(model, tmp_path / "a.pem", tmp_path / "model.sig")
    assert verify_model(model, tmp_path / "model.sig", tmp_path / "a.pub") == \
        f"sha256:{sha256_file(model)}"
    with pytest.raises(ArtifactIntegrityError, match="Key mismatch"):
        verify_model(model, tmp_path / "model.sig", tmp_path / "b.pub")
    with pytest.raises(ArtifactIntegrityError, match="not a model-signing bundle"):
        verify_model(model, tmp_path / "a.pub", tmp_path / "a.pub")
    with pytest.raises(ArtifactIntegrityError, match=r"signature .* does not exist"):
        verify_model(model, tmp_path / "missing.sig", tmp_path / "a.pub")


def test_a_local_model_must_be_pinned_or_signed(tmp_path: Path) -> None:
    def local(**verified: object) -> None:
        parse_config({"models": [{"name": "m", "deployments": [
            {"local": {"gguf": "m.gguf", **verified}}]}]}, base_dir=tmp_path)

    with pytest.raises(ConfigError, match="an unverified file is never served"):
        local()
    local(signature={"bundle": "m.gguf.sig", "public_key": "signing.pub"})
    local(sha256="0" * 64)
