"""Reading a secret the user stored in the OS keychain: the one place that touches it.

Used for the providers' admin keys (`reconcile`), which must never be written to the ledger,
config.toml or a log. The meter only ever *reads* here; the user stores the key with the OS's
own tool (docs/reconcile.md):

- Linux: `secret-tool lookup service halton-meter account NAME` (libsecret), when installed;
- macOS: `security find-generic-password -s halton-meter -a NAME -w` (login keychain);
- Windows: Credential Manager, a generic credential whose target is `halton-meter:NAME`.

Tests replace the whole keychain with `use_keychain(...)` (an in-memory dict), as
lifecycle/boundary.py does for the registry and commands; the OS is chosen by
`boundary.current_os()`, so `HALTON_METER_OS` selects the path on any machine.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Protocol

from halton_meter.lifecycle import boundary

SERVICE = "halton-meter"


class Keychain(Protocol):
    """Where a named secret is looked up; None when it is not stored (or no keychain)."""

    def lookup(self, account: str) -> str | None: ...

    @property
    def where(self) -> str:
        """How the user stores a secret there, for messages (`secret-tool store ...`)."""
        ...


def _first_line(text: str) -> str | None:
    value = text.strip("\r\n")
    return value or None


@dataclass(frozen=True, slots=True)
class CommandKeychain:
    """A keychain read through a command that prints the secret (secret-tool, security)."""

    argv: tuple[str, ...]
    store_hint: str

    def lookup(self, account: str) -> str | None:
        argv = [part.replace("{account}", account) for part in self.argv]
        if shutil.which(argv[0]) is None:
            return None
        try:
            done = subprocess.run(
                argv, capture_output=True, timeout=30, check=False, stdin=subprocess.DEVNULL
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        if done.returncode != 0:
            return None
        return _first_line(done.stdout.decode("utf-8", "replace"))

    @property
    def where(self) -> str:
        return self.store_hint


class WindowsCredentials:
    """Credential Manager through CredReadW (advapi32), imported only on Windows."""

    def lookup(self, account: str) -> str | None:  # pragma: no cover - Windows only
        import ctypes
        from ctypes import wintypes

        class _Credential(ctypes.Structure):
            _fields_ = [
                ("Flags", wintypes.DWORD),
                ("Type", wintypes.DWORD),
                ("TargetName", wintypes.LPWSTR),
                ("Comment", wintypes.LPWSTR),
                ("LastWritten", wintypes.FILETIME),
                ("CredentialBlobSize", wintypes.DWORD),
                ("CredentialBlob", ctypes.POINTER(ctypes.c_char)),
                ("Persist", wintypes.DWORD),
                ("AttributeCount", wintypes.DWORD),
                ("Attributes", ctypes.c_void_p),
                ("TargetAlias", wintypes.LPWSTR),
                ("UserName", wintypes.LPWSTR),
            ]

        advapi = ctypes.WinDLL("advapi32", use_last_error=True)  # type: ignore[attr-defined]
        pointer = ctypes.POINTER(_Credential)()
        if not advapi.CredReadW(f"{SERVICE}:{account}", 1, 0, ctypes.byref(pointer)):
            return None
        try:
            credential = pointer.contents
            blob = ctypes.string_at(credential.CredentialBlob, credential.CredentialBlobSize)
        finally:
            advapi.CredFree(pointer)
        # cmdkey and the Credential Manager UI store the password as UTF-16.
        text = blob.decode("utf-16-le", "replace") if b"\x00" in blob else blob.decode()
        return _first_line(text)

    @property
    def where(self) -> str:
        return f"cmdkey /generic:{SERVICE}:NAME /user:{SERVICE} /pass:KEY"


def linux_keychain() -> Keychain:
    return CommandKeychain(
        ("secret-tool", "lookup", "service", SERVICE, "account", "{account}"),
        f"secret-tool store --label='Halton Meter NAME' service {SERVICE} account NAME",
    )


def macos_keychain() -> Keychain:
    return CommandKeychain(
        ("security", "find-generic-password", "-s", SERVICE, "-a", "{account}", "-w"),
        f"security add-generic-password -s {SERVICE} -a NAME -w",
    )


@dataclass
class _Installed:
    keychain: Keychain | None = None


_installed = _Installed()


def keychain() -> Keychain:
    """This OS's keychain (or the one a test installed)."""
    if _installed.keychain is not None:
        return _installed.keychain
    kind = boundary.current_os()
    if kind == boundary.WINDOWS:
        return WindowsCredentials()
    return macos_keychain() if kind == boundary.MACOS else linux_keychain()


@contextmanager
def _use(replacement: Keychain) -> Iterator[None]:
    previous = _installed.keychain
    _installed.keychain = replacement
    try:
        yield
    finally:
        _installed.keychain = previous


def use_keychain(replacement: Keychain) -> AbstractContextManager[None]:
    """Tests: answer lookups from `replacement` instead of the OS."""
    return _use(replacement)
