"""A config's version: the SHA-256 of its canonical form, stamped on spans (and, later, on
audit records), so what ran can be told from what is in git."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson

from ironhold.config.schema import Config

__all__ = ["canonical_form", "config_version"]


def canonical_form(config: Config) -> dict[str, Any]:
    """The config as data: every default filled in, secrets masked, lists of named things
    (model groups; deployments that all have names) in name order, and where it was loaded
    from left out: the same config reordered, or in another folder, has the same form."""
    form: dict[str, Any] = _ordered(config.model_dump(mode="json",
                                                      exclude={"base_dir", "source"}))
    return form


def _ordered(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _ordered(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [_ordered(v) for v in value]
        if items and all(isinstance(i, dict) and isinstance(i.get("name"), str) for i in items):
            items.sort(key=lambda i: i["name"])
        return items
    return value


def config_version(config: Config) -> str:
    """Hex SHA-256 of the config as canonical JSON (sorted keys, defaults filled in; secrets
    appear masked, so a changed secret alone does not change the version)."""
    canonical = orjson.dumps(canonical_form(config), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(canonical).hexdigest()
