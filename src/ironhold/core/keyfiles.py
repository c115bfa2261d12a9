"""Ed25519 private keys in PEM files: passports and audit checkpoints are signed with them.

A missing file is created once (mode 0600, written exclusively so two replicas starting at the
same moment cannot write two different keys). The public key's RFC 7638 thumbprint is its id.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ironhold.core.errors import ConfigError


def load_or_create_ed25519(path: Path, what: str) -> Ed25519PrivateKey:
    """The key in ``path``; generated there first if the file does not exist."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        with contextlib.suppress(FileExistsError):  # another process won the race: use its key
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(pem)
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not an unencrypted PEM key"
        raise ConfigError(f"{what}: cannot load {path}: {reason}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{what}: {path} is not an Ed25519 private key")
    return key


def public_raw(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.Raw,
                                         serialization.PublicFormat.Raw)
