"""The marked block in the user's shell start-up files that exports the proxy and CA variables.

The block sits between `# >>> halton-meter >>>` and `# <<< halton-meter <<<`; `init` replaces it
in place (or appends it), `uninstall` removes it, and nothing else in the file is touched.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Callable, Mapping
from pathlib import Path

from halton_meter.lifecycle.environment import (
    CA_VARIABLES,
    LOOPBACK,
    PROJECT_PASSWORD,
    PROXY_VARIABLES,
    proxy_url,
)

BEGIN = "# >>> halton-meter >>>"
END = "# <<< halton-meter <<<"


def shell_files(home: Path, environ: Mapping[str, str] | None = None) -> list[Path]:
    """~/.bashrc and ~/.zshrc when they exist, ~/.profile always, and fish's config.fish when
    the user has a fish configuration folder."""
    environ = os.environ if environ is None else environ
    found = [home / name for name in (".bashrc", ".zshrc") if (home / name).exists()]
    config_home = Path(environ.get("XDG_CONFIG_HOME") or home / ".config")
    fish = [config_home / "fish" / "config.fish"] if (config_home / "fish").is_dir() else []
    return [*found, home / ".profile", *fish]


def block_for(path: Path, port: int, bundle: Path) -> str:
    """The block in the language of the file it goes into."""
    return fish_block(port, bundle) if path.suffix == ".fish" else env_block(port, bundle)


# Every byte outside RFC 3986's unreserved set (A-Z a-z 0-9 - . _ ~) as %XX, as
# `environment.proxy_url` (Python's `quote(safe="")`) encodes it: a space, "#", "?" or "é" left
# as it is makes the URL one that curl refuses ("Unsupported proxy syntax"). Bytes, not
# characters: `od` and `awk` are in every POSIX system and behave the same in every locale.
_URL_ENCODE_AWK = (
    'BEGIN { for (i = 0; i < 256; i++) { h = sprintf("%02x", i); '
    "if ((i >= 48 && i <= 57) || (i >= 65 && i <= 90) || (i >= 97 && i <= 122) || "
    'i == 45 || i == 46 || i == 95 || i == 126) t[h] = sprintf("%c", i); '
    'else t[h] = "%" toupper(h) } } '
    '{ for (i = 1; i <= NF; i++) printf "%s", t[$i] }'
)


def _posix_url_part() -> str:
    """sh code setting `_hm_user` to `HALTON_PROJECT` percent-encoded for a URL's user part."""
    return (
        "_hm_user=$(printf '%s' \"$HALTON_PROJECT\" | LC_ALL=C od -An -v -tx1 | "
        f"LC_ALL=C awk '{_URL_ENCODE_AWK}')"
    )


def env_block(port: int, bundle: Path) -> str:
    """POSIX sh (bash, zsh, dash): the proxy and CA variables, and NO_PROXY keeping the user's
    own entries with loopback added once.

    `HALTON_PROJECT`, when set, rides in the proxy URL's user part (an exact project tag, see
    `run --project`). bash and zsh re-read it before each prompt, so `export HALTON_PROJECT=x`
    takes effect at the next command; other shells when the file is sourced again."""
    ca = shlex.quote(str(bundle))
    plain = shlex.quote(proxy_url(port))
    tagged = f'"http://${{_hm_user}}:{PROJECT_PASSWORD}@127.0.0.1:{port}"'
    lines = [
        BEGIN,
        "# Written by `halton-meter init`; `halton-meter uninstall` removes it.",
        "_halton_meter_proxy() {",
        '  if [ -n "${HALTON_PROJECT:-}" ]; then',
        f"    {_posix_url_part()}",
        f"    _hm_url={tagged}",
        "  else",
        f"    _hm_url={plain}",
        "  fi",
        *(f'  export {name}="$_hm_url"' for name in PROXY_VARIABLES),
        "  unset _hm_url _hm_user",
        "}",
        "_halton_meter_proxy",
        'if [ -n "${BASH_VERSION:-}" ]; then',
        '  case ";${PROMPT_COMMAND:-};" in *";_halton_meter_proxy;"*) ;; *)',
        '    PROMPT_COMMAND="_halton_meter_proxy${PROMPT_COMMAND:+;$PROMPT_COMMAND}" ;; esac',
        'elif [ -n "${ZSH_VERSION:-}" ]; then',
        "  autoload -Uz add-zsh-hook && add-zsh-hook precmd _halton_meter_proxy",
        "fi",
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


def fish_block(port: int, bundle: Path) -> str:
    """fish: the same variables; the proxy follows `HALTON_PROJECT` as soon as it changes."""
    ca = _fish_quote(str(bundle))
    lines = [
        BEGIN,
        "# Written by `halton-meter init`; `halton-meter uninstall` removes it.",
        "function _halton_meter_proxy --on-variable HALTON_PROJECT",
        f"    set -l url {_fish_quote(proxy_url(port))}",
        '    if test -n "$HALTON_PROJECT"',
        # fish's url style encodes all but A-Z a-z 0-9 - . _ ~ and "/", which would end the
        # URL's authority: the same bytes as `environment.proxy_url` then.
        "        set -l user (string escape --style=url -- $HALTON_PROJECT"
        " | string replace -a / %2F)",
        f'        set url "http://$user:{PROJECT_PASSWORD}@127.0.0.1:{port}"',
        "    end",
        f"    for name in {' '.join(PROXY_VARIABLES)}",
        "        set -gx $name $url",
        "    end",
        "end",
        "_halton_meter_proxy",
        *(f"set -gx {name} {ca}" for name in CA_VARIABLES),
        "set -gx NODE_USE_ENV_PROXY 1",
        "set -l _hm_np $NO_PROXY",
        'test -z "$_hm_np"; and set _hm_np $no_proxy',
        'set -l _hm_list (string split -n , -- "$_hm_np")',
        f"for _hm_h in {' '.join(LOOPBACK)}",
        "    contains -- $_hm_h $_hm_list; or set -a _hm_list $_hm_h",
        "end",
        "set -gx NO_PROXY (string join , -- $_hm_list)",
        "set -gx no_proxy $NO_PROXY",
        END,
    ]
    return "\n".join(lines) + "\n"


def _fish_quote(word: str) -> str:
    return "'" + word.replace("\\", "\\\\").replace("'", "\\'") + "'"


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


def write_blocks(
    files: list[Path], port: int, bundle: Path, write: Callable[[Path, bytes], bool]
) -> list[str]:
    """Put the current block into each file through `write` (which writes only a change);
    the names of the files it changed."""
    touched = []
    for path in files:
        text = path.read_text(errors="replace") if path.exists() else ""
        if write(path, with_block(text, block_for(path, port, bundle)).encode()):
            touched.append(path.name)
    return touched
