"""The meter's line in Claude Code's status bar: `init --apps` offers it, `uninstall` takes it
back out.

Claude Code reads `statusLine` from `~/.claude/settings.json` (`{"type": "command", "command":
…}`) and runs that command after each message. The edit is only ever made when the person says
yes on a terminal, only when no status line is set yet (someone's own script is never
replaced), and only the `statusLine` key is touched. What was done is recorded in the meter's
home (`STATE_FILE`), so `uninstall` removes exactly our entry, and the file itself when init
created it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

STATE_FILE = "claude-statusline.json"
KEY = "statusLine"


def settings_path(user_home: Path) -> Path:
    return user_home / ".claude" / "settings.json"


def entry(launcher: list[str]) -> dict[str, Any]:
    command = " ".join(_quoted(part) for part in [*launcher, "statusline"])
    return {"type": "command", "command": command, "padding": 0}


def _quoted(part: str) -> str:
    return f'"{part}"' if any(c.isspace() for c in part) else part


def _read(path: Path) -> dict[str, Any] | None:
    """The settings (empty when the file is absent); None when unreadable or not an object."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def planned(user_home: Path, launcher: list[str]) -> tuple[Path, bytes] | str:
    """(file, new content) to add our status line, or why not (in words)."""
    path = settings_path(user_home)
    settings = _read(path)
    if settings is None:
        return f"{path} is not a JSON object; left alone"
    current = settings.get(KEY)
    ours = entry(launcher)
    if isinstance(current, dict) and current.get("command") == ours["command"]:
        return "already in Claude Code's status line"
    if current is not None:
        return f"Claude Code already has a status line ({path}); left alone"
    settings[KEY] = ours
    return path, (json.dumps(settings, indent=2) + "\n").encode()


def record(home: Path, path: Path, existed: bool, command: str) -> bytes:
    """What `uninstall` needs, as the state file's content."""
    state = {"settings": str(path), "existed": existed, "command": command}
    return (json.dumps(state, indent=2) + "\n").encode()


def remove(home: Path) -> str | None:
    """Take our status line back out of Claude Code's settings; what was changed, or None."""
    state_file = home / STATE_FILE
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    path = Path(str(state.get("settings", "")))
    settings = _read(path)
    changed = None
    if settings is not None and path.exists():
        current = settings.get(KEY)
        if isinstance(current, dict) and current.get("command") == state.get("command"):
            del settings[KEY]
            if not settings and not state.get("existed", True):
                path.unlink()
            else:
                path.write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
            changed = f"{path} (statusLine)"
    state_file.unlink(missing_ok=True)
    return changed
