"""A real, throw-away PostgreSQL cluster for the team-server tests and benchmark.

Debian's `postgresql` package (installed by scripts/test) provides initdb and pg_ctl under
/usr/lib/postgresql/<version>/bin. PostgreSQL refuses to run as root, so when the suite runs as
root (CI) the cluster is created and run as the `postgres` user the package creates, in a
folder that user owns; otherwise it runs as the current user. It listens on 127.0.0.1 only.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


def find_bin_dir() -> Path | None:
    """The newest installed PostgreSQL's bin folder, or None."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parent.parent.name),
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PgCluster:
    bin_dir: Path
    folder: Path
    port: int
    run_as: str | None  # the user running the server when we are root

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def dsn(self, database: str = "halton") -> str:
        return f"postgresql://halton@127.0.0.1:{self.port}/{database}"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self.run_as:
            command = ["runuser", "-u", self.run_as, "--", *command]
        return subprocess.run(command, capture_output=True, text=True, timeout=120, check=check)

    def create_database(self, name: str) -> str:
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "halton", name)
        return self.dsn(name)

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.folder, ignore_errors=True)


def start_cluster(settings: dict[str, str] | None = None) -> PgCluster:
    """initdb + pg_ctl start on a free loopback port; trust authentication for user `halton`.

    `settings` are extra server settings (e.g. {"fsync": "off"} for the fast test cluster)."""
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    run_as = None
    folder = Path(tempfile.mkdtemp(prefix="halton-pg-"))
    if os.geteuid() == 0:
        run_as = "postgres"
        entry = pwd.getpwnam(run_as)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
    cluster = PgCluster(bin_dir, folder, _free_port(), run_as)
    cluster._run(
        "initdb", "-D", str(cluster.data), "-U", "halton", "-A", "trust", "-E", "UTF8", "--no-sync"
    )
    options = {
        "listen_addresses": "127.0.0.1",
        "port": str(cluster.port),
        "unix_socket_directories": str(folder),
        "max_connections": "200",
        **(settings or {}),
    }
    flags = " ".join(f"-c {key}={value}" for key, value in options.items())
    log = folder / "server.log"
    cluster._run("pg_ctl", "-D", str(cluster.data), "-l", str(log), "-o", flags, "-w", "start")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        ready = cluster._run("pg_isready", "-h", "127.0.0.1", "-p", str(cluster.port), check=False)
        if ready.returncode == 0:
            break
        time.sleep(0.1)
    cluster._run("createdb", "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "halton", "halton")
    return cluster
