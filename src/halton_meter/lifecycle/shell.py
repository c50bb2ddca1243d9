"""The marked block in the user's shell start-up files that exports the proxy and CA variables.

The block sits between `# >>> halton-meter >>>` and `# <<< halton-meter <<<`; `init` replaces it
in place (or appends it), `uninstall` removes it, and nothing else in the file is touched.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from halton_meter.lifecycle.environment import CA_VARIABLES, LOOPBACK, PROXY_VARIABLES, proxy_url

BEGIN = "# >>> halton-meter >>>"
END = "# <<< halton-meter <<<"


def shell_files(home: Path) -> list[Path]:
    """~/.bashrc and ~/.zshrc when they exist, and ~/.profile always."""
    found = [home / name for name in (".bashrc", ".zshrc") if (home / name).exists()]
    return [*found, home / ".profile"]


def env_block(port: int, bundle: Path) -> str:
    """POSIX sh (bash, zsh, dash): the proxy and CA variables, and NO_PROXY keeping the user's
    own entries with loopback added once."""
    url = shlex.quote(proxy_url(port))
    ca = shlex.quote(str(bundle))
    lines = [
        BEGIN,
        "# Written by `halton-meter init`; `halton-meter uninstall` removes it.",
        *(f"export {name}={url}" for name in PROXY_VARIABLES),
        *(f"export {name}={ca}" for name in CA_VARIABLES),
        "export NODE_USE_ENV_PROXY=1",
        '_hm_np="${NO_PROXY:-${no_proxy:-}}"',
        f"for _hm_h in {' '.join(LOOPBACK)}; do",
        '  case ",$_hm_np," in *",$_hm_h,"*) ;; *) _hm_np="${_hm_np:+$_hm_np,}$_hm_h" ;; esac',
        "done",
        'export NO_PROXY="$_hm_np" no_proxy="$_hm_np"',
        "unset _hm_np _hm_h",
        END,
    ]
    return "\n".join(lines) + "\n"


def _split(text: str) -> tuple[str, str, str] | None:
    """(before, block, after) when the file has a complete block."""
    start = text.find(BEGIN + "\n")
    if start == -1 or (start > 0 and text[start - 1] != "\n"):
        return None
    end = text.find(END, start)
    if end == -1:
        return None
    stop = end + len(END)
    if stop < len(text) and text[stop] == "\n":
        stop += 1
    return text[:start], text[start:stop], text[stop:]


def with_block(text: str, block: str) -> str:
    parts = _split(text)
    if parts is not None:
        return parts[0] + block + parts[2]
    if text and not text.endswith("\n"):
        text += "\n"
    return text + ("\n" if text else "") + block


def without_block(text: str) -> str:
    parts = _split(text)
    if parts is None:
        return text
    before, _, after = parts
    if before.endswith("\n\n") and not after.startswith("\n"):
        before = before[:-1]  # the blank line with_block added
    return before + after


def has_block(text: str) -> bool:
    return _split(text) is not None
