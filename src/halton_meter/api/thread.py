"""uvicorn on its own thread and event loop, inside the daemon process.

mitmproxy's event loop carries every metered byte; the API gets a loop of its own so a slow
query, a big CSV export or a burst of dashboard polls can never delay a client's stream.
"""

from __future__ import annotations

import logging
import socket
import threading

import uvicorn

from halton_meter.api.app import ApiSettings, create_app

log = logging.getLogger(__name__)

HOST = "127.0.0.1"


class ApiThread:
    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def listening(self) -> bool:
        return self._thread is not None

    def start(self) -> str | None:
        """Bind and serve; returns a problem (the port is taken…) instead of raising, because
        metering matters more than the dashboard."""
        # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets whose proto says TCP.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        if hasattr(socket, "SO_REUSEADDR") and not hasattr(socket, "SO_EXCLUSIVEADDRUSE"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, self.settings.port))
            sock.listen(128)
        except OSError as error:
            sock.close()
            return f"cannot listen on {HOST}:{self.settings.port}: {error.strerror or error}"
        config = uvicorn.Config(
            create_app(self.settings),
            log_level="warning",
            access_log=False,
            lifespan="off",
            server_header=False,
            proxy_headers=False,
            timeout_graceful_shutdown=2,
        )
        server = uvicorn.Server(config)
        self._server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="api", daemon=True
        )
        self._thread.start()
        return None

    def stop(self, timeout: float = 5.0) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout)
        if self._thread.is_alive():
            log.warning("the API did not stop within %.0f s; leaving it to process exit", timeout)
