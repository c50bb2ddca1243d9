"""The end of `init`: prove, through the edge, that metering and passthrough both work.

1. A request to the daemon's own test endpoint (capture/selftest.py) goes through the edge the
   way a client's would: CONNECT, TLS verified against `ca-bundle.pem`, POST. The answer names
   the ledger row it becomes, and we wait until that row is in the ledger.
2. A non-LLM host is tunnelled: a one-off echo listener on loopback, reached through the edge,
   sends back what we sent (bytes, not HTTP: the edge must not look inside).
"""

from __future__ import annotations

import json
import secrets
import socket
import sqlite3
import ssl
import threading
import time
from pathlib import Path

from halton_meter.providers import SELF_TEST_HOST

SELF_TEST_PATH = "/v1/self-test"  # answered by capture/selftest.py


class SelfTestError(RuntimeError):
    """What did not work, in words a user can act on."""


def metered_request(edge_port: int, bundle: Path, timeout: float) -> str:
    """One metered request through the edge; returns the ledger id the daemon gave it."""
    context = ssl.create_default_context(cafile=str(bundle))
    try:
        with (
            _connect_through(edge_port, SELF_TEST_HOST, 443, timeout) as raw,
            context.wrap_socket(raw, server_hostname=SELF_TEST_HOST) as tls,
        ):
            tls.sendall(
                f"POST {SELF_TEST_PATH} HTTP/1.1\r\nHost: {SELF_TEST_HOST}\r\n"
                "User-Agent: halton-meter-init\r\nContent-Length: 0\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            answer = _read_all(tls)
    except ssl.SSLCertVerificationError as error:
        raise SelfTestError(
            f"the daemon's certificate is not trusted by {bundle} ({error.verify_message}); "
            "run `halton-meter init` again to rebuild the bundle"
        ) from None
    except (OSError, ssl.SSLError) as error:
        raise SelfTestError(f"the metered test request failed: {error}") from None
    head, _, body = answer.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        status = head.split(b"\r\n", 1)[0].decode("latin-1", "replace")
        raise SelfTestError(f"the daemon answered the metered test request with {status!r}")
    try:
        request_id = json.loads(body)["request_id"]
    except (ValueError, KeyError, TypeError):
        raise SelfTestError("the daemon's answer to the test request is malformed") from None
    return str(request_id)


def wait_for_row(ledger: Path, request_id: str, timeout: float) -> None:
    """The ledger holds the row (the writer commits within ~50 ms)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            con = sqlite3.connect(f"{ledger.as_uri()}?mode=ro", uri=True, timeout=1.0)
            try:
                if con.execute("SELECT 1 FROM requests WHERE id = ?", (request_id,)).fetchone():
                    return
            finally:
                con.close()
        except sqlite3.Error:
            pass
        time.sleep(0.05)
    raise SelfTestError(
        f"the test request was answered but its row ({request_id}) never reached {ledger}; "
        "see `halton-meter doctor` (ledger writable, free disk)"
    )


def tunnel_check(edge_port: int, timeout: float) -> None:
    """Bytes sent to a non-LLM host through the edge come back unchanged."""
    nonce = secrets.token_hex(16).encode()
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(timeout)
        echo = threading.Thread(target=_echo_once, args=(listener,), daemon=True)
        echo.start()
        port = listener.getsockname()[1]
        try:
            with _connect_through(edge_port, "127.0.0.1", port, timeout) as sock:
                sock.sendall(nonce)
                got = b""
                while len(got) < len(nonce) and (chunk := sock.recv(64)):
                    got += chunk
        except OSError as error:
            raise SelfTestError(f"the edge did not tunnel a non-LLM connection: {error}") from None
        echo.join(timeout)
    if got != nonce:
        raise SelfTestError("a tunnelled connection did not carry the bytes through unchanged")


def _connect_through(edge_port: int, host: str, port: int, timeout: float) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", edge_port), timeout=timeout)
    try:
        sock.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(1)  # byte by byte: what follows the head belongs to TLS
            if not chunk:
                raise OSError("the edge closed the connection")
            head += chunk
        status = head.split(b"\r\n", 1)[0].decode("latin-1", "replace")
        if " 200" not in status:
            raise OSError(f"the edge answered the CONNECT with {status!r}")
    except BaseException:
        sock.close()
        raise
    return sock


def _read_all(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _echo_once(listener: socket.socket) -> None:
    try:
        connection, _ = listener.accept()
    except OSError:
        return
    with connection:
        try:
            while chunk := connection.recv(65536):
                connection.sendall(chunk)
        except OSError:
            pass
