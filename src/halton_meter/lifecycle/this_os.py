"""The running OS's `Platform` and the supervisor that comes with it: the one place the OS is
chosen, and the only module that imports the per-OS modules.

    this_os ──> linux.py    LinuxPlatform: systemd --user units, or background processes
            ──> windows.py  WindowsPlatform ─┐ native.py: NativePlatform, NativeSupervisor
            ──> macos.py    MacPlatform ─────┘ (Task Scheduler, launchd)
    each ──> platforms.py (the contract) ──> supervisor.py (components, Background/Systemd)

`HALTON_METER_OS=windows|macos|linux` overrides the detection (boundary.current_os), so the
tests run the Windows and macOS paths on Linux; `HALTON_METER_SUPERVISOR=systemd|background`
skips the systemd probe on Linux.
"""

from __future__ import annotations

from pathlib import Path

from halton_meter.lifecycle import boundary
from halton_meter.lifecycle.linux import LinuxPlatform
from halton_meter.lifecycle.macos import MacPlatform
from halton_meter.lifecycle.platforms import Platform
from halton_meter.lifecycle.supervisor import (
    BackgroundSupervisor,
    Supervisor,
    SystemdSupervisor,
    systemd_user_manager,
)
from halton_meter.lifecycle.windows import WindowsPlatform


def platform(user_home: Path | None = None) -> Platform:
    """The running OS's platform, with its supervisor (`platform(...).supervisor`). On Linux
    that is systemd when a user manager answers, background processes otherwise."""
    kind = boundary.current_os()
    if kind == boundary.WINDOWS:
        return WindowsPlatform(boundary.windows())
    if kind == boundary.MACOS:
        return MacPlatform(boundary.macos(), user_home or Path.home())
    linux_supervisor = SystemdSupervisor() if systemd_user_manager() else BackgroundSupervisor()
    return LinuxPlatform(linux_supervisor, user_home or Path.home())


def supervisor() -> Supervisor:
    """What starts and stops the edge and the daemon on this OS (for start, stop, status)."""
    return platform().supervisor
