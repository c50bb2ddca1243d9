"""The one place where Halton Meter touches Windows and macOS: registry, commands, broadcasts.

Everything above this module (task XML, plists, what to write and when, what to restore) is
plain Python that runs on any OS; only these small interfaces reach the system. Tests on Linux
select the Windows or macOS code path with `HALTON_METER_OS` and hand in an in-memory registry
and a command recorder through `use_windows()` / `use_macos()`; nothing else is replaced. The
real implementations import `winreg` and `ctypes.windll` lazily: Linux and macOS never do.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Protocol

OS_ENV = "HALTON_METER_OS"  # "windows", "macos" or "linux": for tests, overrides the detection
WINDOWS, MACOS, LINUX = "windows", "macos", "linux"

# Registry value types (winreg.REG_*), spelled out so this module imports on any OS.
REG_SZ, REG_EXPAND_SZ, REG_DWORD = 1, 2, 4

ENVIRONMENT_KEY = "Environment"
INTERNET_SETTINGS_KEY = r"Software\Microsoft\Windows\CurrentVersion\Internet Settings"
COMMAND_TIMEOUT = 120.0


def current_os() -> str:
    forced = os.environ.get(OS_ENV, "").lower()
    if forced in (WINDOWS, MACOS, LINUX):
        return forced
    if sys.platform == "win32":
        return WINDOWS
    return MACOS if sys.platform == "darwin" else LINUX


@dataclass(frozen=True, slots=True)
class Completed:
    """What a command returned; the output is text (decoded leniently)."""

    returncode: int
    stdout: str = ""
    stderr: str = ""

    @property
    def ok(self) -> bool:
        return self.returncode == 0


@dataclass(frozen=True, slots=True)
class RegistryValue:
    kind: int  # REG_SZ, REG_EXPAND_SZ, REG_DWORD
    data: str | int

    def as_json(self) -> dict[str, str | int]:
        return {"kind": self.kind, "data": self.data}

    @classmethod
    def from_json(cls, value: object) -> RegistryValue | None:
        if not isinstance(value, dict):
            return None
        kind, data = value.get("kind"), value.get("data")
        if not isinstance(kind, int) or not isinstance(data, str | int):
            return None
        return cls(kind, data)


class WindowsSystem(Protocol):
    """HKEY_CURRENT_USER, the commands (schtasks, certutil) and the two broadcasts."""

    def user_id(self) -> str:
        """DOMAIN\\user of the current user, for the task's logon trigger and principal."""
        ...

    def read_value(self, key: str, name: str) -> RegistryValue | None: ...

    def write_value(self, key: str, name: str, value: RegistryValue) -> None: ...

    def delete_value(self, key: str, name: str) -> None: ...

    def run(self, argv: Sequence[str]) -> Completed: ...

    def broadcast_environment(self) -> None:
        """WM_SETTINGCHANGE "Environment": Explorer and what it starts later see the change."""
        ...

    def refresh_internet_settings(self) -> None:
        """INTERNET_OPTION_SETTINGS_CHANGED + REFRESH: WinINet rereads the proxy."""
        ...


class MacSystem(Protocol):
    """The commands launchctl and security, in the user's GUI domain."""

    def uid(self) -> int: ...

    def run(self, argv: Sequence[str]) -> Completed: ...


def _run(argv: Sequence[str], creationflags: int = 0) -> Completed:
    try:
        done = subprocess.run(
            list(argv),
            capture_output=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
            creationflags=creationflags,
        )
    except FileNotFoundError as error:
        return Completed(127, "", f"{argv[0]}: {error}")
    except subprocess.TimeoutExpired:
        return Completed(124, "", f"{argv[0]} did not finish in {COMMAND_TIMEOUT:.0f} s")
    return Completed(
        done.returncode,
        done.stdout.decode(errors="replace"),
        done.stderr.decode(errors="replace"),
    )


class RealWindows:
    """winreg, ctypes and subprocess (without a console window)."""

    def user_id(self) -> str:
        user = os.environ.get("USERNAME", "")
        domain = os.environ.get("USERDOMAIN", "")
        return f"{domain}\\{user}" if domain else user

    def read_value(self, key: str, name: str) -> RegistryValue | None:
        if sys.platform != "win32":
            raise OSError("the Windows registry exists only on Windows")
        import winreg

        try:
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, key) as handle:
                data, kind = winreg.QueryValueEx(handle, name)
        except FileNotFoundError:
            return None
        return RegistryValue(int(kind), data if isinstance(data, int) else str(data))

    def write_value(self, key: str, name: str, value: RegistryValue) -> None:
        if sys.platform != "win32":
            raise OSError("the Windows registry exists only on Windows")
        import winreg

        with winreg.CreateKeyEx(winreg.HKEY_CURRENT_USER, key, 0, winreg.KEY_SET_VALUE) as handle:
            winreg.SetValueEx(handle, name, 0, value.kind, value.data)

    def delete_value(self, key: str, name: str) -> None:
        if sys.platform != "win32":
            raise OSError("the Windows registry exists only on Windows")
        import winreg

        try:
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, key, 0, winreg.KEY_SET_VALUE) as handle:
                winreg.DeleteValue(handle, name)
        except FileNotFoundError:
            pass

    def run(self, argv: Sequence[str]) -> Completed:
        return _run(argv, creationflags=getattr(subprocess, "CREATE_NO_WINDOW", 0))

    def broadcast_environment(self) -> None:
        if sys.platform != "win32":
            raise OSError("WM_SETTINGCHANGE exists only on Windows")
        import ctypes
        from ctypes import wintypes

        hwnd_broadcast, wm_settingchange, smto_abortifhung = 0xFFFF, 0x001A, 0x0002
        result = wintypes.DWORD()
        ctypes.windll.user32.SendMessageTimeoutW(
            hwnd_broadcast,
            wm_settingchange,
            0,
            "Environment",
            smto_abortifhung,
            5000,
            ctypes.byref(result),
        )

    def refresh_internet_settings(self) -> None:
        if sys.platform != "win32":
            raise OSError("WinINet exists only on Windows")
        import ctypes

        settings_changed, refresh = 39, 37
        wininet = ctypes.windll.wininet
        wininet.InternetSetOptionW(None, settings_changed, None, 0)
        wininet.InternetSetOptionW(None, refresh, None, 0)


class RealMac:
    def uid(self) -> int:
        return os.getuid() if hasattr(os, "getuid") else 0

    def run(self, argv: Sequence[str]) -> Completed:
        return _run(argv)


@dataclass
class _Installed:
    windows: WindowsSystem | None = None
    macos: MacSystem | None = None


_installed = _Installed()


def windows() -> WindowsSystem:
    return _installed.windows or RealWindows()


def macos() -> MacSystem:
    return _installed.macos or RealMac()


@contextmanager
def _use(which: str, system: WindowsSystem | MacSystem) -> Iterator[None]:
    previous = getattr(_installed, which)
    setattr(_installed, which, system)
    try:
        yield
    finally:
        setattr(_installed, which, previous)


def use_windows(system: WindowsSystem) -> AbstractContextManager[None]:
    """Tests: route the Windows calls to `system` (an in-memory registry, a command recorder)."""
    return _use("windows", system)


def use_macos(system: MacSystem) -> AbstractContextManager[None]:
    """Tests: route the macOS calls to `system` (a command recorder)."""
    return _use("macos", system)
