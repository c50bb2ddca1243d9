"""The project a folder belongs to, without a process to look at: for the status line and
`pr-cost`, which know a working folder (Claude Code's workspace, the shell's cwd) and must
answer in milliseconds. The same order as the chain's folder layers (attribution/chain.py):
HALTON_PROJECT, then `.haltonrc` upward, then the git repository's name, then the folder's.

Kept light for the status line, whose whole process has 50 ms: os.path on strings, not
pathlib (which brings `glob`, `fnmatch` and `re`), no psutil, no typing at run time.
"""

from __future__ import annotations

import os

from halton_meter.slugs import normalise_slug

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (mypy knows the name)
if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

HALTONRC_NAME = ".haltonrc"


def upward(folder: str | os.PathLike[str]) -> Iterator[str]:
    """`folder` (made absolute) and each folder above it, up to the root."""
    current = os.path.abspath(os.fspath(folder))
    while True:
        yield current
        parent = os.path.dirname(current)
        if parent == current:
            return
        current = parent


def repository_root(folder: str | os.PathLike[str]) -> str | None:
    """The nearest folder at or above `folder` with a `.git` (a folder, or a file in worktrees
    and submodules)."""
    for candidate in upward(folder):
        if os.path.exists(os.path.join(candidate, ".git")):
            return candidate
    return None


def haltonrc_project(folder: str | os.PathLike[str]) -> str | None:
    """The project of the nearest valid `.haltonrc` at or above `folder`."""
    for candidate in upward(folder):
        try:
            with open(os.path.join(candidate, HALTONRC_NAME), encoding="utf-8") as handle:
                text = handle.read()
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


def folder_project(
    folder: str | os.PathLike[str], environ: Mapping[str, str], default: str = "misc"
) -> str:
    value = environ.get("HALTON_PROJECT")
    if value and (slug := normalise_slug(value)):
        return slug
    if found := haltonrc_project(folder):
        return found
    root = repository_root(folder)
    if root is not None and (slug := normalise_slug(os.path.basename(root))):
        return slug
    return normalise_slug(os.path.basename(os.path.abspath(os.fspath(folder)))) or default
