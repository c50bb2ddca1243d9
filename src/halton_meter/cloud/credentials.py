"""`cloud-credentials.json` in the home: the pairing's token and identity, 0600, written
atomically so a crash never leaves half a file. It survives upgrades; `cloud disconnect`
removes it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from halton_meter.paths import Paths
from halton_meter.runstate import write_atomic

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
    write_atomic(path, json.dumps(asdict(credentials), indent=2), mode=0o600)
    return path


def remove_credentials(paths: Paths) -> bool:
    path = credentials_path(paths)
    existed = path.exists()
    path.unlink(missing_ok=True)
    return existed
