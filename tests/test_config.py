"""config.toml: defaults, every kind of mistake named with its key and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from halton_meter.config import Config, ConfigError, load_config, parse_config
from halton_meter.paths import Paths

SOURCE = Path("/home/user/.halton-meter/config.toml")


def test_missing_file_gives_defaults(tmp_path: Path) -> None:
    config = load_config(Paths(home=tmp_path, home_overridden=True))
    assert config == Config()
    assert config.daemon.proxy_port == 8081
    assert config.default_project == "misc"


def test_full_file_is_read(tmp_path: Path) -> None:
    bundle = tmp_path / "corp.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    text = f"""
# my settings
[daemon]
proxy_port = 9081
api_port = 9765

[ca]
dir = "{tmp_path / "ca"}"

[upstream]
ca_bundle = "{bundle}"
proxy = "http://alice:s3cret@proxy.corp:3128"

[upstream.resolve]
"api.anthropic.com:443" = "127.0.0.1:9443"

[tagging]
default_project = "agency/internal"

[[endpoints]]
host = "llm.corp.example"
port = 8443
wire = "openai-chat"
provider = "corp-gateway"
"""
    config = parse_config(text, SOURCE)
    assert config.daemon.proxy_port == 9081
    assert config.daemon.api_port == 9765
    assert config.ca_dir == tmp_path / "ca"
    assert config.upstream.ca_bundle == bundle
    assert config.upstream.proxy == "http://alice:s3cret@proxy.corp:3128"
    assert config.upstream.resolve == {("api.anthropic.com", 443): ("127.0.0.1", 9443)}
    assert config.default_project == "agency/internal"
    (endpoint,) = config.endpoints
    assert (endpoint.host, endpoint.port, endpoint.wire, endpoint.provider) == (
        "llm.corp.example",
        8443,
        "openai-chat",
        "corp-gateway",
    )


@pytest.mark.parametrize(
    ("text", "key", "line", "problem"),
    [
        ("[daemon]\nproxy_prot = 1\n", "daemon.proxy_prot", 2, "unknown key"),
        ("[daemon]\n\nproxy_port = 'x'\n", "daemon.proxy_port", 3, "expected an integer port"),
        ("[daemon]\nproxy_port = 70000\n", "daemon.proxy_port", 2, "out of range"),
        ("[daemon]\nlog_level = 'loud'\n", "daemon.log_level", 2, "not one of"),
        ("[daemon]\ndrain_seconds = 61\n", "daemon.drain_seconds", 2, "out of range 0-60"),
        ("[daemon]\ndrain_seconds = -1\n", "daemon.drain_seconds", 2, "out of range"),
        ("[daemon]\ndrain_seconds = '30'\n", "daemon.drain_seconds", 2, "number of seconds"),
        ("[deamon]\nproxy_port = 1\n", "deamon", 1, "unknown section"),
        ("[tagging]\ndefault_project = 'Acme Corp'\n", "tagging.default_project", 2, "slug"),
        ("[upstream]\nproxy = 'socks5://x'\n", "upstream.proxy", 2, "proxy URL"),
        ("[upstream]\nca_bundle = '/nonexistent/ca.pem'\n", "upstream.ca_bundle", 2, "exist"),
        (
            '[upstream.resolve]\n"api.openai.com" = "127.0.0.1:1"\n',
            "upstream.resolve.api.openai.com",
            2,
            "host:port",
        ),
        (
            "[[endpoints]]\nhost='a'\nwire='openai-chat'\nprovider='a'\n"
            "[[endpoints]]\nhost='b'\nwire='soap'\nprovider='b'\n",
            "endpoints.wire",
            7,
            "not one of",
        ),
        ("[[endpoints]]\nhost='a'\nprovider='a'\n", "endpoints", 1, "needs 'wire'"),
        ("[daemon]\nproxy_port = 8765\n", "daemon", 1, "ports must differ"),
        ("[daemon\nproxy_port = 1\n", "(syntax)", 1, ""),
    ],
)
def test_mistakes_name_key_and_line(text: str, key: str, line: int, problem: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(text, SOURCE)
    error = raised.value
    assert error.key == key
    assert error.line == line
    assert problem in str(error)
    assert f"line {line}" in str(error)
    assert str(SOURCE) in str(error)


def test_cors_allow_origins() -> None:
    assert parse_config("", SOURCE).cors_allow_origins == ()  # nobody by default
    text = '[cors]\nallow_origins = ["http://localhost:3000", "https://Dash.Example:8443"]\n'
    assert parse_config(text, SOURCE).cors_allow_origins == (
        "http://localhost:3000",
        "https://dash.example:8443",
    )
    for bad in ('"http://localhost:3000"', '["*"]', '["http://localhost:3000/path"]', "[3000]"):
        with pytest.raises(ConfigError) as error:
            parse_config(f"[cors]\nallow_origins = {bad}\n", SOURCE)
        assert "cors.allow_origins" in str(error.value) and "line 2" in str(error.value)


def test_drain_seconds_defaults_to_30_and_takes_fractions() -> None:
    assert parse_config("", SOURCE).daemon.drain_seconds == 30.0
    assert parse_config("[daemon]\ndrain_seconds = 2.5\n", SOURCE).daemon.drain_seconds == 2.5
    assert parse_config("[daemon]\ndrain_seconds = 0\n", SOURCE).daemon.drain_seconds == 0.0
