"""Which process owns a TCP connection, from the client's side of it.

The meter sees a connection from `127.0.0.1:54321` to its port; the client process holds the
other end. On Linux the kernel lists every TCP socket with its inode in /proc/net/tcp and tcp6,
and each process's open sockets appear as `socket:[inode]` links in /proc/PID/fd: one read of
the table and a scan of the fd folders, standard library only. Elsewhere (macOS, Windows)
psutil asks the OS for the same answer.

The socket's inode comes from sock_diag netlink (one exact lookup, as `ss` does; the /proc/net
tables are the fallback). The fd scan is the expensive part (one readlink per open file of
every process), so it looks first at the processes that owned recent connections (a tool opens
many), then from the newest process down (the client usually started recently), and skips
processes of other users.
"""

from __future__ import annotations

import os
import socket
import struct
import sys
from collections import OrderedDict
from collections.abc import Iterable
from typing import Literal

Address = tuple[str, int]

PROC = "/proc"
_RECENT_OWNERS = 64  # pids remembered as likely owners of the next connection
_recent: OrderedDict[int, None] = OrderedDict()


def find_socket_owner(client: Address, server: Address) -> int | None:
    """The pid holding the client end of the TCP connection `client` → `server`, or None when
    no process holds it any more (it exited) or the OS does not say (another user's process)."""
    if sys.platform.startswith("linux") and os.path.isdir(f"{PROC}/net"):
        return _owner_from_proc(client, server)
    return _owner_from_psutil(client, server)


# --- Linux: /proc ---------------------------------------------------------------------------


def _proc_keys(address: Address) -> list[tuple[str, str]]:
    """How /proc/net/tcp{,6} spell `address`: (file, "HEXADDR:HEXPORT"), each 32-bit word of
    the address in host byte order. An IPv4 address may also sit on a dual-stack socket."""
    host, port = address
    suffix = f":{port:04X}"
    try:
        packed4 = socket.inet_pton(socket.AF_INET, host)
    except OSError:
        packed4 = None
    keys = []
    if packed4 is not None:
        keys.append(("tcp", _words(packed4) + suffix))
        keys.append(("tcp6", _words(b"\0" * 10 + b"\xff\xff" + packed4) + suffix))
    else:
        try:
            packed6 = socket.inet_pton(socket.AF_INET6, host.strip("[]"))
        except OSError:
            return []
        keys.append(("tcp6", _words(packed6) + suffix))
    return keys


def _words(packed: bytes) -> str:
    return "".join(
        f"{int.from_bytes(packed[i : i + 4], sys.byteorder):08X}" for i in range(0, len(packed), 4)
    )


# sock_diag (what `ss` uses): ask the kernel for one socket by its exact address pair, in
# microseconds, where reading /proc/net/tcp costs milliseconds on a busy machine (the kernel
# prints every socket, TIME_WAIT ones included).
_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST = 1
_NLMSG_ERROR = 2
_NO_COOKIE = 0xFFFFFFFF
_HEADER = struct.Struct("=IHHII")  # nlmsghdr
_REQUEST = struct.Struct("=BBBBI")  # inet_diag_req_v2 up to its sockid
_SOCKID = struct.Struct(">HH16s16s")  # ports and addresses, network byte order
_SOCKID_TAIL = struct.Struct("=III")  # interface, cookie
_MESSAGE = struct.Struct("=BBBB48sIIIII")  # inet_diag_msg: … uid, inode


def _diag_query(family: int, client: bytes, cport: int, server: bytes, sport: int) -> bytes:
    body = (
        _REQUEST.pack(family, socket.IPPROTO_TCP, 0, 0, 0xFFFFFFFF)
        + _SOCKID.pack(cport, sport, client.ljust(16, b"\0"), server.ljust(16, b"\0"))
        + _SOCKID_TAIL.pack(0, _NO_COOKIE, _NO_COOKIE)
    )
    header = _HEADER.pack(_HEADER.size + len(body), _SOCK_DIAG_BY_FAMILY, _NLM_F_REQUEST, 1, 0)
    return header + body


def _diag_candidates(client: Address, server: Address) -> list[tuple[int, bytes, bytes]]:
    """(family, client address, server address) spellings to ask about: IPv4, and the same
    pair as IPv4-mapped IPv6 for a dual-stack client socket."""
    found: list[tuple[int, bytes, bytes]] = []
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            found.append(
                (
                    family,
                    socket.inet_pton(family, client[0].strip("[]")),
                    socket.inet_pton(family, server[0].strip("[]")),
                )
            )
        except OSError:
            continue
    if found and found[0][0] == socket.AF_INET:
        mapped = b"\0" * 10 + b"\xff\xff"
        found.append((socket.AF_INET6, mapped + found[0][1], mapped + found[0][2]))
    return found


def _inode_from_netlink(
    client: Address, server: Address
) -> tuple[int, int] | Literal[False] | None:
    """(inode, uid); None when the kernel has no such socket (or only an orphan: inode 0);
    False when sock_diag itself is not available here."""
    try:
        channel = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_SOCK_DIAG)
    except (OSError, AttributeError):
        return False
    with channel:
        for family, client_ip, server_ip in _diag_candidates(client, server):
            try:
                channel.send(_diag_query(family, client_ip, client[1], server_ip, server[1]))
                reply = channel.recv(8192)
            except OSError:
                return False
            length, kind = _HEADER.unpack_from(reply)[:2]
            if kind == _NLMSG_ERROR or length < _HEADER.size + _MESSAGE.size:
                continue  # ENOENT: not this spelling
            fields = _MESSAGE.unpack_from(reply, _HEADER.size)
            uid, inode = fields[-2], fields[-1]
            return (inode, uid) if inode else None
    return None


def socket_inode(client: Address, server: Address) -> tuple[int, int] | None:
    """(inode, uid) of the client's socket; None when it is gone or orphaned (inode 0: its
    process has closed it)."""
    found = _inode_from_netlink(client, server)
    if found is False:
        return _inode_from_tables(client, server)
    return found or None


def _inode_from_tables(client: Address, server: Address) -> tuple[int, int] | None:
    """The same answer from /proc/net/tcp{,6}, where sock_diag is not available."""
    server_keys = dict(_proc_keys(server))
    for table, local in _proc_keys(client):
        remote = server_keys.get(table)
        try:
            with open(f"{PROC}/net/{table}", "rb") as handle:
                lines = handle.read().decode("ascii", "replace").splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or fields[1] != local:
                continue
            if remote is not None and fields[2] != remote:
                continue
            inode = int(fields[9])
            return (inode, int(fields[7])) if inode else None
    return None


def _owner_from_proc(client: Address, server: Address) -> int | None:
    found = socket_inode(client, server)
    if found is None:
        return None
    inode, uid = found
    target = f"socket:[{inode}]"
    holder = _first_holder(target, uid)
    if holder is None:
        return None
    opener = _opener(holder, target)
    _remember(opener)
    return opener


def _opener(pid: int, target: str) -> int:
    """The process that opened the socket rather than a child that inherited it: a client
    that forks (Codex starting `git` from a tokio worker thread) leaves the socket in the child
    between fork and exec, and the newest-first scan meets the child first. While the parent
    holds the same socket, the parent is the owner."""
    while (parent := _parent(pid)) is not None and parent > 1 and _holds(parent, target):
        pid = parent
    return pid


def _parent(pid: int) -> int | None:
    """The parent pid from /proc/PID/stat (the field after the parenthesised name)."""
    try:
        with open(f"{PROC}/{pid}/stat", "rb") as handle:
            return int(handle.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _first_holder(target: str, uid: int) -> int | None:
    """The first process found holding `target`: recent owners, then newest first."""
    own = os.getpid()
    tried: set[int] = set()
    for pid in list(reversed(_recent)):
        tried.add(pid)
        if _holds(pid, target):
            _remember(pid)
            return pid
    try:
        pids = _newest_first(int(name) for name in os.listdir(PROC) if name.isdigit())
    except OSError:
        return None
    other_users = []
    for pid in pids:
        if pid in tried or pid == own:
            continue
        try:
            if os.stat(f"{PROC}/{pid}").st_uid != uid:
                other_users.append(pid)  # a socket handed to another user's process: rare
                continue
        except OSError:
            continue
        if _holds(pid, target):
            _remember(pid)
            return pid
    for pid in other_users:
        if _holds(pid, target):
            return pid
    return None


def _newest_first(pids: Iterable[int]) -> list[int]:
    """Pids from the most recently created down. Linux hands pids out in increasing order and
    wraps at pid_max, so newest first means: descending from the last pid created (the last
    field of /proc/loadavg), then the ones above it (created before the last wrap)."""
    ordered = sorted(pids, reverse=True)
    try:
        with open(f"{PROC}/loadavg", "rb") as handle:
            last = int(handle.read().split()[-1])
    except (OSError, ValueError, IndexError):
        return ordered
    split = next((index for index, pid in enumerate(ordered) if pid <= last), len(ordered))
    return ordered[split:] + ordered[:split]


def _holds(pid: int, target: str) -> bool:
    """Whether one of the process's open files is the socket `target`."""
    try:
        folder = os.open(f"{PROC}/{pid}/fd", os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        for name in os.listdir(folder):
            try:
                if os.readlink(name, dir_fd=folder) == target:
                    return True
            except OSError:
                continue
    except OSError:
        return False
    finally:
        os.close(folder)
    return False


def _remember(pid: int) -> None:
    _recent.pop(pid, None)
    _recent[pid] = None
    while len(_recent) > _RECENT_OWNERS:
        _recent.popitem(last=False)


# --- elsewhere: psutil ----------------------------------------------------------------------


def _owner_from_psutil(client: Address, server: Address) -> int | None:
    import psutil  # type: ignore[import-untyped,unused-ignore]

    def matches(connection: object) -> bool:
        laddr = getattr(connection, "laddr", None)
        raddr = getattr(connection, "raddr", None)
        return bool(
            laddr
            and raddr
            and _same(client, (laddr.ip, laddr.port))
            and _same(server, (raddr.ip, raddr.port))
        )

    try:
        for connection in psutil.net_connections(kind="tcp"):
            if matches(connection) and connection.pid:
                return int(connection.pid)
        return None
    except psutil.AccessDenied:  # macOS without root: ask each of our own processes instead
        pass
    for process in psutil.process_iter():
        try:
            if any(matches(c) for c in process.net_connections(kind="tcp")):
                return int(process.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return None


def _same(wanted: Address, seen: Address) -> bool:
    host = seen[0].removeprefix("::ffff:")
    return wanted[1] == seen[1] and wanted[0].strip("[]").removeprefix("::ffff:") == host
