"""The three loopback ports, and `effective-ports.json`: the one record of the ports in use.

Defaults: the edge (the proxy port clients use) 8081, the daemon behind it 8090, the API 8765,
all overridable under `[daemon]` in config.toml. `init` checks each: a port that is free, or
held by our own edge or daemon, is kept; a default held by another program is replaced by a
free fallback; a port the user pinned in config.toml is never replaced (init fails instead).
The chosen set is written to `effective-ports.json`, which edge, daemon, status and `run` read:
when present it wins over config.toml.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import tomllib
from dataclasses import dataclass
from pathlib import Path

from halton_meter.config import Config
from halton_meter.paths import Paths
from halton_meter.runstate import (
    DAEMON_STATE_FILE,
    EDGE_STATE_FILE,
    pid_alive,
    read_state,
    write_atomic,
)

HOST = "127.0.0.1"
NAMES = ("proxy_port", "internal_port", "api_port")
FALLBACK_SPAN = 100  # fallbacks are looked for just above the wanted port first
EFFECTIVE_FILE = "effective-ports.json"


class PortError(RuntimeError):
    """A pinned port is held by another program; the message says what to do."""


@dataclass(frozen=True, slots=True)
class Ports:
    proxy_port: int
    internal_port: int
    api_port: int

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in NAMES}


def effective_path(paths: Paths) -> Path:
    return paths.home / EFFECTIVE_FILE


def read_effective(paths: Paths) -> Ports | None:
    """The ports `init` chose, or None when there is no (valid) effective-ports.json."""
    try:
        data = json.loads(effective_path(paths).read_text(encoding="utf-8"))
        values = {name: int(data[name]) for name in NAMES}
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not all(1 <= value <= 65535 for value in values.values()):
        return None
    if len(set(values.values())) != len(values):
        return None
    return Ports(**values)


def effective_config(config: Config, paths: Paths) -> Config:
    """`config` with the ports of effective-ports.json, when that file exists."""
    ports = read_effective(paths)
    if ports is None:
        return config
    daemon = dataclasses.replace(
        config.daemon,
        proxy_port=ports.proxy_port,
        internal_port=ports.internal_port,
        api_port=ports.api_port,
    )
    return dataclasses.replace(config, daemon=daemon)


def configured_ports(config: Config) -> Ports:
    daemon = config.daemon
    return Ports(daemon.proxy_port, daemon.internal_port, daemon.api_port)


def pinned_names(paths: Paths) -> set[str]:
    """The port keys set explicitly under [daemon] in config.toml (already validated)."""
    try:
        data = tomllib.loads(paths.config.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return set()
    daemon = data.get("daemon", {})
    return {name for name in NAMES if isinstance(daemon, dict) and name in daemon}


def listening(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:port."""
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def port_free(port: int) -> bool:
    """Whether a listener could bind 127.0.0.1:port now (SO_REUSEADDR, as asyncio binds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        if os.name != "nt":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def own_ports(paths: Paths) -> set[int]:
    """Ports held right now by this home's own edge and daemon (from their state files)."""
    held: set[int] = set()
    # The daemon's API port too: it serves it itself (daemon.json "api_port", null when not).
    for name, keys in (
        (EDGE_STATE_FILE, ("port",)),
        (DAEMON_STATE_FILE, ("listen_port", "api_port")),
    ):
        data = read_state(paths.home / name) or {}
        pid = data.get("pid")
        if isinstance(pid, int) and pid_alive(pid, data.get("started_at")):
            held.update(int(data[key]) for key in keys if isinstance(data.get(key), int))
    return held


@dataclass(frozen=True, slots=True)
class Choice:
    ports: Ports
    # name -> (wanted port, chosen port) for each port that had to move
    fallbacks: dict[str, tuple[int, int]]


def choose_ports(config: Config, paths: Paths) -> Choice:
    """Validate (or choose) the ports: pinned ones must be usable, others may fall back.

    A port already recorded in effective-ports.json is kept while it stays usable, so the
    proxy URL in the users' shells does not move between two `init`s."""
    configured = configured_ports(config)
    recorded = read_effective(paths)
    pinned = pinned_names(paths)
    ours = own_ports(paths)
    chosen: dict[str, int] = {}
    fallbacks: dict[str, tuple[int, int]] = {}

    def usable(port: int) -> bool:
        return port not in chosen.values() and (port in ours or port_free(port))

    for name in NAMES:
        wanted = getattr(configured, name)
        if name in pinned:
            if not usable(wanted):
                raise PortError(
                    f"[daemon] {name} = {wanted} is pinned in {paths.config}, but 127.0.0.1:"
                    f"{wanted} is held by another program (find it with "
                    f"`ss -ltnp 'sport = :{wanted}'`). Stop that program, or remove the key "
                    "(init then picks a free port), or set another port."
                )
            chosen[name] = wanted
            continue
        candidates = [wanted]
        if recorded is not None:
            candidates.insert(0, getattr(recorded, name))
        for candidate in candidates:
            if usable(candidate):
                chosen[name] = candidate
                break
        else:
            chosen[name] = _fallback(wanted, set(chosen.values()))
            fallbacks[name] = (wanted, chosen[name])
    return Choice(Ports(**chosen), fallbacks)


def _fallback(wanted: int, taken: set[int]) -> int:
    for port in range(wanted + 1, min(wanted + FALLBACK_SPAN, 65536)):
        if port not in taken and port_free(port):
            return port
    while True:  # the system's choice
        with socket.socket() as sock:
            sock.bind((HOST, 0))
            port = int(sock.getsockname()[1])
        if port not in taken:
            return port


def write_effective(paths: Paths, ports: Ports) -> bool:
    """Write effective-ports.json atomically; False (nothing written) when unchanged."""
    target = effective_path(paths)
    content = json.dumps(ports.as_dict(), indent=2) + "\n"
    with contextlib.suppress(OSError):
        if target.read_text(encoding="utf-8") == content:
            return False
    write_atomic(target, content)
    return True
