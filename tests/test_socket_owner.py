"""Which process owns a client's connection, with real processes and loopback sockets."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from halton_meter.attribution.sockets import find_socket_owner

# Connects, then forks a child that keeps the inherited socket without exec (as a client does
# between fork and exec when it starts a helper such as git), and prints
# "PARENT CHILD LOCAL_PORT".
FORKING_CLIENT = """
import os, socket, sys, time
connection = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
child = os.fork()
if child == 0:
    time.sleep(30)
    os._exit(0)
print(os.getpid(), child, connection.getsockname()[1], flush=True)
sys.stdin.read()
os.kill(child, 9)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="fork and /proc")
def test_the_owner_is_the_process_that_opened_the_socket_not_a_forked_child() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        client = subprocess.Popen(
            [sys.executable, "-c", FORKING_CLIENT, str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert client.stdout is not None
            parent, child, local = (int(part) for part in client.stdout.readline().split())
            accepted, _ = server.accept()
            with accepted:
                assert child > parent  # the newest-first scan meets the child first
                assert find_socket_owner(("127.0.0.1", local), ("127.0.0.1", port)) == parent
        finally:
            client.communicate("", timeout=10)
