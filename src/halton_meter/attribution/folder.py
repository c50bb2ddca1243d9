"""The project a folder belongs to, without a process to look at: for the status line and
`pr-cost`, which know a working folder (Claude Code's workspace, the shell's cwd) and must
answer in milliseconds. The same order as the chain's folder layers (attribution/chain.py):
HALTON_PROJECT, then `.haltonrc` upward, then the git repository's name, then the folder's.
Kept light (no psutil): the status line imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from halton_meter.attribution.gitrefs import git_root
from halton_meter.slugs import normalise_slug

HALTONRC_NAME = ".haltonrc"


def haltonrc_project(folder: Path) -> str | None:
    """The project of the nearest valid `.haltonrc` at or above `folder`."""
    for candidate in (folder, *folder.parents):
        try:
            text = (candidate / HALTONRC_NAME).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        import tomllib  # only when there is one: the status line counts milliseconds

        try:
            value = tomllib.loads(text).get("project")
        except tomllib.TOMLDecodeError:
            continue
        if isinstance(value, str) and (slug := normalise_slug(value)):
            return slug
    return None


def folder_project(folder: Path, environ: Mapping[str, str], default: str = "misc") -> str:
    value = environ.get("HALTON_PROJECT")
    if value and (slug := normalise_slug(value)):
        return slug
    if found := haltonrc_project(folder):
        return found
    root = git_root(folder)
    if root is not None and (slug := normalise_slug(root.name)):
        return slug
    return normalise_slug(folder.name) or default
