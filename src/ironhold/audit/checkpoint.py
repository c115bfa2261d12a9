"""Signed checkpoints: the log's origin, tree size and root, signed with Ed25519.

The signed text is a C2SP tlog-checkpoint note body (``origin``, size, base64 root, one per
line) with the signing time as an extension line, so anything that verifies a checkpoint
verifies exactly these bytes. Saved outside the log (``ironhold audit checkpoint``), a
checkpoint is the trust anchor ``ironhold audit verify --checkpoint FILE`` checks against.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = ["Checkpoint", "CheckpointFormatError", "key_id", "sign_checkpoint"]


class CheckpointFormatError(ValueError):
    """A checkpoint file that is not one."""


def key_id(public: Ed25519PublicKey) -> str:
    """A short, stable name for a public key: the first 16 bytes of SHA-256 of its raw form."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    origin: str
    size: int
    root: bytes
    signed_at: float
    key_id: str
    signature: bytes

    def body(self) -> bytes:
        return signed_body(self.origin, self.size, self.root, self.signed_at)

    def verify(self, public: Ed25519PublicKey) -> bool:
        """Signed by ``public``'s private key, over exactly these values."""
        try:
            public.verify(self.signature, self.body())
        except InvalidSignature:
            return False
        return True

    def as_dict(self) -> dict[str, Any]:
        return {"origin": self.origin, "size": self.size,
                "root": base64.b64encode(self.root).decode(),
                "signed_at": self.signed_at, "key_id": self.key_id,
                "signature": base64.b64encode(self.signature).decode()}

    @classmethod
    def from_dict(cls, data: object) -> Checkpoint:
        if not isinstance(data, dict):
            raise CheckpointFormatError("a checkpoint is a JSON object")
        try:
            checkpoint = cls(
                origin=str(data["origin"]),
                size=int(data["size"]),
                root=base64.b64decode(data["root"], validate=True),
                signed_at=float(data["signed_at"]),
                key_id=str(data["key_id"]),
                signature=base64.b64decode(data["signature"], validate=True),
            )
        except KeyError as exc:
            raise CheckpointFormatError(f"a checkpoint needs {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            raise CheckpointFormatError(f"a checkpoint field is malformed: {exc}") from None
        if len(checkpoint.root) != 32 or len(checkpoint.signature) != 64 or checkpoint.size < 0:
            raise CheckpointFormatError("a checkpoint's root is 32 bytes, its signature 64")
        return checkpoint


def signed_body(origin: str, size: int, root: bytes, signed_at: float) -> bytes:
    return (f"{origin}\n{size}\n{base64.b64encode(root).decode()}\n"
            f"signed_at {signed_at:.6f}\n").encode()


def sign_checkpoint(key: Ed25519PrivateKey, origin: str, size: int, root: bytes,
                    signed_at: float) -> Checkpoint:
    signed_at = round(signed_at, 6)
    signature = key.sign(signed_body(origin, size, root, signed_at))
    return Checkpoint(origin, size, root, signed_at, key_id(key.public_key()), signature)
