"""What the resolver may learn about a process, read through psutil: the same code on every OS.

Only what attribution needs is read, and only what it needs is kept: the name, the working
folder, the parent, the command line (searched for IDE folder arguments, never stored), and two
environment variables. A process that has exited raises `ProcessGone`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped,unused-ignore]

# `python3.12` is "python", `node.exe` is "node": the tool, not its build.
_VERSIONED = re.compile(r"^(python|pythonw|pypy|node|ruby|perl|php|java|bun|deno)[0-9.]*$")
_WANTED_ENV = ("HALTON_PROJECT", "HOSTNAME", "KUBERNETES_SERVICE_HOST")


class ProcessGone(Exception):
    """The process exited before the resolver could look at it."""


@dataclass(frozen=True, slots=True)
class ProcessFacts:
    pid: int
    name: str  # normalised: "python", "node", "claude", "codex", …
    cwd: Path | None  # None when the OS does not say (another user's process)
    ppid: int | None
    cmdline: tuple[str, ...]
    environ: dict[str, str]  # only _WANTED_ENV
    container: str | None  # "docker" or "k8s" when in a container other than the meter's
    started_at: float


def client_name(raw: str) -> str:
    """The tool's name as people say it: lowercase, no `.exe`, no interpreter version."""
    name = raw.strip().lower().removesuffix(".exe")
    found = _VERSIONED.match(name)
    return found.group(1) if found else name


def read_process(pid: int, *, ancestor: bool = False) -> ProcessFacts:
    """The client's facts; an `ancestor` (parent walk, IDE hints) skips the environment and
    the container, which only the client itself is asked about."""
    try:
        process = psutil.Process(pid)
        with process.oneshot():
            name = process.name()
            ppid = process.ppid()
            started = process.create_time()
            cwd: str | None = _try(process.cwd)
            cmdline: list[str] = _try(process.cmdline) or []
            environ: dict[str, str] = {} if ancestor else (_try(process.environ) or {})
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        raise ProcessGone(pid) from None
    except psutil.AccessDenied:
        return ProcessFacts(pid, "", None, None, (), {}, None, 0.0)
    wanted = {key: environ[key] for key in _WANTED_ENV if key in environ}
    return ProcessFacts(
        pid=pid,
        name=client_name(name),
        cwd=Path(cwd) if cwd else None,
        ppid=ppid or None,
        cmdline=tuple(cmdline),
        environ=wanted,
        container=None if ancestor else _container(pid, wanted),
        started_at=started,
    )


def _try(read: Callable[[], Any]) -> Any:
    """One fact the OS may refuse (another user's process) without losing the others."""
    try:
        return read()
    except (psutil.AccessDenied, OSError):
        return None


def container_kind(cgroup: str, environ: dict[str, str]) -> str | None:
    """ "k8s" or "docker" from a process's /proc/PID/cgroup text and environment."""
    if "kubepods" in cgroup or "KUBERNETES_SERVICE_HOST" in environ:
        return "k8s"
    if any(word in cgroup for word in ("docker", "containerd", "libpod", "/lxc/")):
        return "docker"
    return None


def _container(pid: int, environ: dict[str, str]) -> str | None:
    """A container kind only when the process lives in another mount namespace than the meter
    (a container with host networking): when both share one, the container says nothing."""
    proc = f"/proc/{pid}"
    try:
        if os.readlink(f"{proc}/ns/mnt") == os.readlink("/proc/self/ns/mnt"):
            return None
        with open(f"{proc}/cgroup", encoding="utf-8", errors="replace") as handle:
            cgroup = handle.read()
    except OSError:  # not Linux, or not ours to read
        return None
    kind = container_kind(cgroup, environ)
    if kind is None and os.path.exists(f"{proc}/root/.dockerenv"):
        kind = "docker"
    return kind


def container_hostname(facts: ProcessFacts) -> str | None:
    if facts.environ.get("HOSTNAME"):
        return facts.environ["HOSTNAME"]
    try:
        with open(f"/proc/{facts.pid}/root/etc/hostname", encoding="utf-8") as handle:
            return handle.read().strip() or None
    except OSError:
        return None
