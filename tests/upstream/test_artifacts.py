from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from ironhold.core.errors import ArtifactIntegrityError
from ironhold.upstream.artifacts import sha256_file, verify_artifact


def test_verify_accepts_the_pinned_digest_and_refuses_others(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF" + bytes(range(256)) * 40_000)
    digest = hashlib.sha256(model.read_bytes()).hexdigest()
    assert sha256_file(model) == digest
    verify_artifact(model, digest)
    verify_artifact(model, digest.upper())
    with pytest.raises(ArtifactIntegrityError) as err:
        verify_artifact(model, "0" * 64)
    assert digest in err.value.message and "refusing to serve" in err.value.message
    with pytest.raises(ArtifactIntegrityError, match="does not exist"):
        verify_artifact(tmp_path / "missing.gguf", digest)
