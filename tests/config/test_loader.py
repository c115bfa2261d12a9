from __future__ import annotations

from pathlib import Path

import pytest

from ironhold.config import load_config, parse_config
from ironhold.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(text)
    return path


def test_the_documented_keys_work_as_written(tmp_path: Path) -> None:
    path = write(tmp_path, """
server: {host: 127.0.0.1, port: 8080}
state: {url: "sqlite:///./.ironhold/ironhold.db"}
models:
  - name: chat-small
    deployments:
      - url: http://127.0.0.1:18000/v1
        model: upstream-model-name
        api_key: ${UPSTREAM_KEY}
        weight: 1
      - local: {gguf: /path/model.gguf, sha256: "%s"}
""" % ("ab" * 32))
    config = load_config(path, env={"UPSTREAM_KEY": "s3cret"})
    group = config.models[0]
    assert group.name == "chat-small"
    remote, local = group.deployments
    assert remote.url == "http://127.0.0.1:18000/v1" and remote.model == "upstream-model-name"
    assert remote.api_key is not None and remote.api_key.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(config)  # secrets never show in reprs or logs
    assert local.local is not None and local.local.gguf == Path("/path/model.gguf")
    assert config.base_dir == tmp_path.resolve()


def test_errors_name_the_file_the_field_path_and_the_problem(tmp_path: Path) -> None:
    path = write(tmp_path, """
models:
  - name: chat
    deployments:
      - url: http://ok/v1
      - url: "ftp://nope"
""")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(path) in err.value.message
    assert "models[0].deployments[1].url: must be an http:// or https:// URL" in err.value.message


def test_unknown_keys_and_missing_env_are_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"server.prot: unknown key"):
        load_config(write(tmp_path, "server: {prot: 1}\n"))
    with pytest.raises(ConfigError, match=r"models\[0\].deployments\[0\].api_key: "
                                          r"environment variable NOPE_KEY is not set"):
        load_config(write(tmp_path, "models: [{name: a, deployments: "
                                    "[{url: 'http://x/v1', api_key: '${NOPE_KEY}'}]}]\n"), env={})
    assert load_config(write(tmp_path, "server: {host: '${H:-0.0.0.0}'}\n"),
                       env={}).server.host == "0.0.0.0"


@pytest.mark.parametrize("text, problem", [
    ("models: [{name: a, deployments: []}]", "models[0].deployments: List should have at least"),
    ("models: [{name: a, deployments: [{model: x}]}]", "exactly one of 'url' or 'local'"),
    ("models: [{name: a, deployments: [{url: 'http://x/v1'}]}, "
     "{name: a, deployments: [{url: 'http://x/v1'}]}]", "defined twice"),
    ("models: [{name: a, routing: {timeout: {total: soon}}, deployments: [{url: 'http://x/v1'}]}]",
     "not a duration"),
    ("models: [{name: a, timeout: {total: 1s}, deployments: [{url: 'http://x/v1'}]}]",
     "'timeout' now lives under 'routing'"),
    ("models: [{name: a, fallbacks: [b], deployments: [{url: 'http://x/v1'}]}]",
     "falls back to 'b', which is not defined"),
    ("models: [{name: a, routing: {balancer: random}, deployments: [{url: 'http://x/v1'}]}]",
     "routing.balancer"),
    ("models: [{name: a, deployments: [{url: 'http://x/v1', faults: [{kind: boom}]}]}]",
     "faults[0].kind"),
    ("models: [{name: a, deployments: [{name: d, url: 'http://x/v1'}, {name: d, url: 'http://y/v1'}]}]",
     "deployment names must be unique"),
    ("state: {url: 'mysql://x'}", "state.url: must start with"),
    ("models: [{name: a, deployments: [{local: {gguf: x.gguf, sha256: abc}}]}]",
     "64-character hex"),
    ("[1, 2]", "top level must be a mapping"),
    ("server: {port: [}", "not valid YAML"),
])
def test_invalid_configs(tmp_path: Path, text: str, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    assert problem in err.value.message


def test_durations() -> None:
    config = parse_config({"models": [{"name": "a", "routing": {"timeout": {
        "connect": "250ms", "first_token": "2m", "total": 90}},
        "deployments": [{"url": "http://x/v1"}]}]})
    timeout = config.models[0].routing.timeout
    assert (timeout.connect, timeout.first_token, timeout.total) == (0.25, 120.0, 90.0)


@pytest.mark.parametrize("example", sorted((ROOT / "examples").glob("*.yaml")),
                         ids=lambda p: p.name)
def test_shipped_examples_are_valid(example: Path) -> None:
    env = {"PRIVATE_CLOUD_KEY": "k", "IRONHOLD_KEY_SECRET": "x" * 32, "HOME": "/home/u"}
    assert load_config(example, env=env).models


def test_a_reference_reads_the_file_its_FILE_variable_names(tmp_path: Path) -> None:
    """As container platforms mount secrets: ${NAME} from the file $NAME_FILE names."""
    secret = tmp_path / "key-secret"
    secret.write_text("a-secret-of-enough-length\n")
    data = {"auth": {"key_secret": "${KEY_SECRET}"}}
    config = parse_config(data, env={"KEY_SECRET_FILE": str(secret)})
    assert config.auth.key_secret is not None
    assert config.auth.key_secret.get_secret_value() == "a-secret-of-enough-length"
    # The variable itself wins over its file.
    direct = parse_config(data, env={"KEY_SECRET": "another-secret-value",
                                     "KEY_SECRET_FILE": str(secret)})
    assert direct.auth.key_secret is not None
    assert direct.auth.key_secret.get_secret_value() == "another-secret-value"
    with pytest.raises(ConfigError) as missing:
        parse_config(data, env={"KEY_SECRET_FILE": str(tmp_path / "nope")}, source="g.yaml")
    assert missing.value.message == ("g.yaml: auth.key_secret: KEY_SECRET_FILE names a file "
                                     "that cannot be read (FileNotFoundError)")
