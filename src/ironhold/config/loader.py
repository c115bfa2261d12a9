"""Loading: YAML in, ``${ENV}`` references resolved (from the variable, or from the file that
``${ENV}_FILE`` names, as container platforms mount secrets), a validated ``Config`` out.

Errors name the file, the field's path and what is wrong, e.g.
``gateway.yaml: models[0].deployments[1].url: must be an http:// or https:// URL``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from ironhold.config.schema import Config
from ironhold.core.errors import ConfigError

M = TypeVar("M", bound=BaseModel)
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    return parse_config(data, source=str(path), base_dir=path.resolve().parent, env=env)


def load_yaml_model(path: str | Path, model: type[M], env: Mapping[str, str] | None = None) -> M:
    """Any other YAML file of the project (chaos experiments, ...) with the config's rules:
    ``${ENV}`` references, and errors that name the file, the field path and the problem."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys")
    resolved = _resolve_env(data, os.environ if env is None else env, str(path), ())
    try:
        return model.model_validate(resolved)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, str(path))) from exc


def parse_config(
    data: Any,
    *,
    source: str = "<config>",
    base_dir: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys")
    resolved = _resolve_env(data, os.environ if env is None else env, source, ())
    resolved["base_dir"] = base_dir or Path.cwd()
    resolved["source"] = source
    try:
        return Config.model_validate(resolved)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, source)) from exc


def _resolve_env(value: Any, env: Mapping[str, str], source: str, loc: tuple[Any, ...]) -> Any:
    if isinstance(value, str):
        def substitute(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            if name in env:
                return env[name]
            if f"{name}_FILE" in env:
                return _secret_file(env[f"{name}_FILE"], name, source, loc)
            if default is not None:
                return default
            raise ConfigError(
                f"{source}: {_path(loc)}: environment variable {name} is not set"
            )

        return _ENV_REF.sub(substitute, value)
    if isinstance(value, dict):
        return {k: _resolve_env(v, env, source, (*loc, k)) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_env(v, env, source, (*loc, i)) for i, v in enumerate(value)]
    return value


def _secret_file(path: str, name: str, source: str, loc: tuple[Any, ...]) -> str:
    """``${NAME}`` from the file ``$NAME_FILE`` names (a mounted Secret), without its final
    newline."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{source}: {_path(loc)}: {name}_FILE names a file that cannot be "
                          f"read ({type(exc).__name__})") from None
    return text.removesuffix("\n").removesuffix("\r")


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _describe(exc: ValidationError, source: str) -> str:
    lines = []
    for error in exc.errors(include_url=False):
        loc = tuple(p for p in error["loc"] if not str(p).startswith("function-"))
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown key (check its spelling and place)"
        lines.append(f"{source}: {_path(loc)}: {message}")
    return "\n".join(lines)
