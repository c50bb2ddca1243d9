"""The team server's settings: a DSN from HALTON_METER_SERVER_DSN or a TOML file.

[server]
dsn = "postgresql://meter@db.internal/halton"   # or HALTON_METER_SERVER_DSN (wins)
host = "127.0.0.1"          # bind address; expose it through a TLS reverse proxy
port = 8780
public_url = "https://meter.example.com"        # used in approval links
max_batch_rows = 1000
pool_size = 10
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

DSN_ENV = "HALTON_METER_SERVER_DSN"
CONFIG_ENV = "HALTON_METER_SERVER_CONFIG"


class ServerConfigError(ValueError):
    """A missing DSN or a bad key in the server's config file."""


@dataclass(frozen=True, slots=True)
class ServerSettings:
    dsn: str = ""
    host: str = "127.0.0.1"
    port: int = 8780
    public_url: str = ""
    max_batch_rows: int = 1000
    pool_size: int = 10
    workers: int = 2

    def base_url(self) -> str:
        return self.public_url.rstrip("/") or f"http://{self.host}:{self.port}"


_TYPES: dict[str, type] = {
    f.name: type(getattr(ServerSettings(), f.name)) for f in fields(ServerSettings)
}


SETTINGS_ENV = "HALTON_METER_SERVER_SETTINGS"  # how `server run` hands settings to its workers


def settings_to_environment(settings: ServerSettings) -> None:
    os.environ[SETTINGS_ENV] = json.dumps(asdict(settings))


def settings_from_environment() -> ServerSettings:
    return ServerSettings(**json.loads(os.environ[SETTINGS_ENV]))


def load_settings(config_file: Path | None = None, **overrides: Any) -> ServerSettings:
    """File (from the argument or HALTON_METER_SERVER_CONFIG), then the DSN variable, then
    explicit command-line values; a DSN is required."""
    settings = ServerSettings()
    path = config_file or (Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else None)
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise ServerConfigError(f"{path}: {error}") from None
        section = data.get("server")
        if not isinstance(section, dict) or set(data) - {"server"}:
            raise ServerConfigError(f"{path}: expected one [server] table")
        values: dict[str, Any] = {}
        for key, value in section.items():
            if key not in _TYPES:
                raise ServerConfigError(
                    f"{path}: server.{key}: unknown key (known: {', '.join(_TYPES)})"
                )
            if type(value) is not _TYPES[key]:
                raise ServerConfigError(
                    f"{path}: server.{key}: expected {_TYPES[key].__name__}, got {value!r}"
                )
            values[key] = value
        settings = replace(settings, **values)
    if os.environ.get(DSN_ENV):
        settings = replace(settings, dsn=os.environ[DSN_ENV])
    settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    if not settings.dsn:
        raise ServerConfigError(
            f"no database: set {DSN_ENV} or `dsn` in the [server] table of a config file "
            f"(--config or {CONFIG_ENV})"
        )
    if not 1 <= settings.workers <= 64:
        raise ServerConfigError("server.workers must be between 1 and 64")
    if not 1 <= settings.max_batch_rows <= 10_000:
        raise ServerConfigError("server.max_batch_rows must be between 1 and 10000")
    return settings
