"""`halton-meter daemon` with a bench-only workaround for upstream connection reuse.

The meter sends a provider host to the fake upstream through `[upstream.resolve]`, applied in
`MeterAddon.server_connect` by rewriting `server.address`. mitmproxy only reuses an upstream
connection whose `address` equals the request's `(host, port)`, so with `resolve` every request
opens a new upstream connection, none is closed while the client stays connected, and the sixth
request on one client connection waits forever for mitmproxy's 5-connections-per-address limit.

Without `resolve` (how users reach the real providers) the address is never rewritten and
connections are reused. To measure that behaviour against a local fake, this wrapper puts the
requested address back once the TCP connection is up. It changes nothing else. `bench/run.py`
uses it only when its preflight finds the unmodified daemon does not reuse connections.
"""

from __future__ import annotations

import sys
from typing import Any

from halton_meter.capture.addon import MeterAddon
from halton_meter.cli import main

_server_connect = MeterAddon.server_connect
_requested: dict[str, tuple[str, int]] = {}


def _remember_requested(self: MeterAddon, data: Any) -> None:
    requested = data.server.address
    _server_connect(self, data)
    if requested is not None and data.server.address != requested:
        _requested[data.server.id] = requested


def _restore_requested(self: MeterAddon, data: Any) -> None:
    requested = _requested.pop(data.server.id, None)
    if requested is not None:
        # Server.__setattr__ refuses address changes on an open connection; bypass it.
        object.__setattr__(data.server, "address", requested)


def _forget(self: MeterAddon, data: Any) -> None:
    _requested.pop(data.server.id, None)


MeterAddon.server_connect = _remember_requested  # type: ignore[method-assign]
MeterAddon.server_connected = _restore_requested  # type: ignore[attr-defined]
MeterAddon.server_connect_error = _forget  # type: ignore[attr-defined]

if __name__ == "__main__":
    sys.argv = ["halton-meter", "daemon", *sys.argv[1:]]
    main()
