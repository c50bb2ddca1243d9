"""`cloud-credentials.json` in the home: the pairing's token and identity, 0600, written
atomically so a crash never leaves half a file. It survives upgrades; `cloud disconnect`
removes it."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from halton_meter.paths import Paths

FILE_NAME = "cloud-credentials.json"


class CredentialsError(ValueError):
    """The credentials file exists but cannot be read; the message names it."""


@dataclass(frozen=True, slots=True)
class Credentials:
    server_url: str
    token: str
    workspace_id: str
    workspace: str
    machine_id: str
    machine_name: str
    user: str
    paired_at: str

    @property
    def sync_target(self) -> str:
        """What the sync position belongs to: another server or workspace starts from zero."""
        return f"{self.server_url}#{self.workspace_id}"


def credentials_path(paths: Paths) -> Path:
    return paths.home / FILE_NAME


def load_credentials(paths: Paths) -> Credentials | None:
    path = credentials_path(paths)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as error:
        raise CredentialsError(f"{path}: unreadable ({error}); run `cloud connect` again") from None
    try:
        return Credentials(**{key: str(data[key]) for key in Credentials.__dataclass_fields__})
    except (KeyError, TypeError) as error:
        raise CredentialsError(f"{path}: missing {error}; run `cloud connect` again") from None


def save_credentials(paths: Paths, credentials: Credentials) -> Path:
    path = credentials_path(paths)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.unlink(missing_ok=True)
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(asdict(credentials), handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    return path


def remove_credentials(paths: Paths) -> bool:
    path = credentials_path(paths)
    existed = path.exists()
    path.unlink(missing_ok=True)
    return existed
