"""A config's version: the SHA-256 of its canonical form (with the contents of the policy files
it names), stamped on spans and audit records, so what ran can be told from what is in git."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import orjson

from ironhold.config.schema import Config

__all__ = ["canonical_form", "config_version", "referenced_files"]


def canonical_form(config: Config) -> dict[str, Any]:
    """The config as data: every default filled in, secrets masked, lists of named things
    (model groups; deployments that all have names) in name order, and where it was loaded
    from left out: the same config reordered, or in another folder, has the same form."""
    form: dict[str, Any] = _ordered(config.model_dump(mode="json",
                                                      exclude={"base_dir", "source"}))
    files = referenced_files(config)
    if files:
        # A policy edited in git is a new config, though no line of the YAML changed.
        form["file_digests"] = {name: _digest(path) for name, path in sorted(files.items())}
    return form


def referenced_files(config: Config) -> dict[str, Path]:
    """The files whose contents are part of the config (policies, by the path the config
    names them with, folders expanded to their Cedar files)."""
    files: dict[str, Path] = {}
    if config.policy is not None:
        for named in config.policy.files:
            path = config.base_dir / named
            if path.is_dir():
                for inner in sorted([*path.glob("*.cedar"), *path.glob("*.cedarschema")]):
                    files[f"{named}/{inner.name}"] = inner
            else:
                files[str(named)] = path
    return files


def _digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return "unreadable"


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
