"""Handing the listening socket from a running edge to its successor, so a restart after an
upgrade never refuses a client.

The running edge offers its listening socket on a Unix socket in the home folder (`edge.sock`,
in the 0700 home, and only to a peer of the same user). A new edge on the same port, started by
the supervisor to replace it, asks there first and, when it gets the socket, accepts on the
very same one: connections queued in the kernel during the swap are accepted by whichever edge
is still running, none is reset. The supervisor stops the old edge once the new one has
published its state (edge.json).
The supervisor asks for a take-over with runstate.TAKE_OVER_ENV: a second edge started by hand
must not quietly share the port with the running one.
Not available on Windows (no descriptor passing); the edge then binds as usual.

The daemon hands its own listening socket (the internal port) over the same way, on
`daemon.sock` (DAEMON_SOCKET_NAME), so a restarted or upgraded daemon takes every hand-off from
the first moment and the old one drains what it already has.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
from collections.abc import Callable
from pathlib import Path

SOCKET_NAME = "edge.sock"
DAEMON_SOCKET_NAME = "daemon.sock"
ASK_TIMEOUT = 2.0
MAX_PATH = 100  # sun_path holds 104-108 bytes depending on the system


def supported(home: Path, name: str = SOCKET_NAME) -> bool:
    return (
        hasattr(socket, "AF_UNIX")
        and hasattr(socket, "send_fds")
        and len(os.fsencode(home / name)) < MAX_PATH
    )


def take_over(home: Path, host: str, port: int, name: str = SOCKET_NAME) -> socket.socket | None:
    """The listening socket of a running edge (or daemon, by `name`) on host:port, when one
    hands it over."""
    if not supported(home, name):
        return None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(ASK_TIMEOUT)
            conn.connect(str(home / name))
            _, fds, _, _ = socket.recv_fds(conn, 16, 1)
    except OSError:
        return None
    if not fds:
        return None
    listener = socket.socket(fileno=fds[0])
    try:
        address = listener.getsockname()
    except OSError:
        address = None
    if not isinstance(address, tuple) or tuple(address[:2]) != (host, port):
        listener.close()  # another port (the configuration changed): bind our own
        return None
    return listener


class Offer:
    """Serves the listening socket's descriptor on `edge.sock` while this edge runs."""

    def __init__(
        self,
        home: Path,
        listener_fd: int,
        name: str = SOCKET_NAME,
        keeper: Callable[[], int | None] = lambda: None,
    ) -> None:
        self.path = home / name
        self.listener_fd = listener_fd
        self.given = 0  # how many successors got the socket
        # The pid of the guard, which keeps a copy to hold the port while no edge runs: a copy
        # it takes is no successor (the edge's stop is then not a handover).
        self.keeper = keeper
        self._server: asyncio.AbstractServer | None = None
        self._inode: int | None = None

    async def start(self) -> bool:
        """True when offered; a failure only means the next restart binds instead."""
        if not supported(self.path.parent, self.path.name):
            return False
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a predecessor's: it is handing over to us, or gone
        old_umask = os.umask(0o077)
        try:
            self._server = await asyncio.start_unix_server(self._give, str(self.path))
            self._inode = self.path.stat().st_ino
        except OSError:
            return False
        finally:
            os.umask(old_umask)
        return True

    async def _give(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            transport_socket = writer.get_extra_info("socket")
            if transport_socket is not None and _same_user(transport_socket):
                with socket.socket(fileno=os.dup(transport_socket.fileno())) as conn:
                    conn.setblocking(True)
                    conn.settimeout(ASK_TIMEOUT)
                    socket.send_fds(conn, [b"edge"], [self.listener_fd])
                    keeper = self.keeper()
                    if keeper is None or _peer_pid(transport_socket) != keeper:
                        self.given += 1
        except OSError:
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        with contextlib.suppress(OSError):  # only our own: the successor has its own there
            if self._inode is not None and self.path.stat().st_ino == self._inode:
                self.path.unlink()


def _peer_pid(transport_socket: object) -> int | None:
    """The peer's pid (Linux SO_PEERCRED), None where it cannot be known."""
    peercred = getattr(socket, "SO_PEERCRED", None)
    if peercred is None:
        return None
    raw = transport_socket.getsockopt(  # type: ignore[attr-defined]
        socket.SOL_SOCKET, peercred, struct.calcsize("3i")
    )
    pid, _, _ = struct.unpack("3i", raw)
    return int(pid)


def _same_user(transport_socket: object) -> bool:
    """The peer runs as our user (Linux SO_PEERCRED); elsewhere the 0700 home decides."""
    peercred = getattr(socket, "SO_PEERCRED", None)
    if peercred is None:
        return True
    raw = transport_socket.getsockopt(  # type: ignore[attr-defined]
        socket.SOL_SOCKET, peercred, struct.calcsize("3i")
    )
    _, uid, _ = struct.unpack("3i", raw)
    return bool(uid == os.getuid())
