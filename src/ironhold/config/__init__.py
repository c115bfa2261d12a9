"""The typed schema of Ironhold's one YAML config, and its loading."""

from ironhold.config.loader import load_config, parse_config
from ironhold.config.schema import (
    AuthConfig,
    Config,
    DeploymentConfig,
    LocalModelConfig,
    LoggingConfig,
    ModelGroupConfig,
    ServerConfig,
    StateConfig,
    TimeoutConfig,
)

__all__ = [
    "AuthConfig",
    "Config",
    "DeploymentConfig",
    "LocalModelConfig",
    "LoggingConfig",
    "ModelGroupConfig",
    "ServerConfig",
    "StateConfig",
    "TimeoutConfig",
    "load_config",
    "parse_config",
]
