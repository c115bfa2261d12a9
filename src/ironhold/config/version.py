"""A config's version: the SHA-256 of its canonical form, stamped on spans (and, later, on
audit records), so what ran can be told from what is in git."""

from __future__ import annotations

import hashlib

import orjson

from ironhold.config.schema import Config

__all__ = ["config_version"]


def config_version(config: Config) -> str:
    """Hex SHA-256 of the config as canonical JSON (sorted keys, defaults filled in; secrets
    appear masked, so a changed secret alone does not change the version)."""
    canonical = orjson.dumps(config.model_dump(mode="json", exclude={"base_dir"}),
                             option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()
