"""Model signatures: OpenSSF ``model-signing`` (a Sigstore bundle whose signed statement
names the file and its digest), made with an elliptic-curve private key and checked against
the matching public key. A pinned SHA-256 says *which* file; a signature also says *who*
vouched for it, so a new model version needs no config change beyond its file.

CPU-bound (the file is hashed): call these from a worker thread, not the event loop.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ironhold.core.errors import ArtifactIntegrityError
from ironhold.upstream.artifacts import sha256_file

__all__ = ["generate_key_pair", "sign_model", "signed_digest", "verify_model"]


def sign_model(model: Path, private_key: Path, signature: Path) -> None:
    """Write ``signature``: a Sigstore bundle over ``model``'s digest, signed with
    ``private_key`` (PEM, elliptic curve: P-256, P-384 or P-521)."""
    import model_signing

    _require_file(model, "model file")
    _require_file(private_key, "private key")
    try:
        model_signing.signing.Config().use_elliptic_key_signer(
            private_key=private_key).sign(model, signature)
    except (ValueError, TypeError) as exc:
        raise ArtifactIntegrityError(f"cannot sign {model} with {private_key}: {exc}") from None


def verify_model(model: Path, signature: Path, public_key: Path) -> str:
    """Check that ``signature`` was made by ``public_key``'s private key over exactly this
    ``model`` file; returns the signed digest (``sha256:<hex>``). Raises
    ``ArtifactIntegrityError`` saying why not."""
    import model_signing

    _require_file(model, "model file")
    _require_file(signature, "signature")
    _require_file(public_key, "public key")
    signed = signed_digest(signature)  # a file that is no bundle at all is said so plainly
    try:
        model_signing.verifying.Config().use_elliptic_key_verifier(
            public_key=public_key).verify(model, signature)
    except Exception as exc:  # the library raises ValueError and its dependencies' errors
        reason = str(exc) or type(exc).__name__
        if reason.startswith("Signature mismatch"):
            # The library's message shows raw digest bytes: say it in hex.
            reason = (f"its SHA-256 is {sha256_file(model)}, but the signature vouches for "
                      f"{signed.removeprefix('sha256:')}")
        raise ArtifactIntegrityError(
            f"model file {model} does not match its signature {signature} under the public "
            f"key {public_key}: {reason}; refusing to serve it") from None
    return signed


def signed_digest(signature: Path) -> str:
    """The digest a (verified) signature vouches for, as ``algorithm:hex``."""
    try:
        bundle = json.loads(signature.read_text(encoding="utf-8"))
        statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
        resources = statement["predicate"]["resources"]
        if len(resources) == 1:
            return f"{resources[0]['algorithm']}:{resources[0]['digest']}"
        subject = statement["subject"][0]["digest"]
        algorithm, value = next(iter(subject.items()))
        return f"{algorithm}:{value}"
    except (OSError, ValueError, KeyError, IndexError, TypeError, StopIteration) as exc:
        raise ArtifactIntegrityError(f"{signature}: not a model-signing bundle ({exc})") from None


def generate_key_pair(private_key: Path, public_key: Path) -> None:
    """A new P-256 key pair as PEM files (the private one readable by its owner only)."""
    key = ec.generate_private_key(ec.SECP256R1())
    private_key.parent.mkdir(parents=True, exist_ok=True)
    public_key.parent.mkdir(parents=True, exist_ok=True)
    private_key.touch(mode=0o600, exist_ok=False)
    private_key.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
    public_key.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))


def _require_file(path: Path, what: str) -> None:
    if not path.is_file():
        raise ArtifactIntegrityError(f"{what} {path} does not exist")
