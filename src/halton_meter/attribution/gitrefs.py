"""A repository's branch and HEAD commit, read from the files under `.git` (never a `git`
subprocess: this runs once per row on the ledger writer thread, and in the status line).

`.git` is a folder, or a file (`gitdir: …`) in linked worktrees and submodules; a worktree's
own git folder holds HEAD and a `commondir` file naming the shared one, where `refs/` and
`packed-refs` live. HEAD is `ref: refs/heads/NAME` on a branch, or a commit id when detached.

`HeadCache` keeps one answer per repository and re-reads it only when the files it came from
changed (one `stat` each of HEAD, the branch's loose ref and `packed-refs`), checked at most once
per `fresh_seconds` (the writer's: 0.2 s), so a checkout or a commit shows on the rows after it.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from halton_meter.attribution.folder import repository_root

_HEADS = "refs/heads/"
_MAX_FILE = 64 * 1024  # HEAD and refs are tiny; packed-refs can be large but is read rarely
_MAX_PACKED = 32 * 1024 * 1024
# At most this many repositories are remembered (a CI box may see many checkouts).
MAX_REPOSITORIES = 256


class GitHead:
    """Where a repository's work stands: the branch (None when detached) and the commit
    (None on a branch with no commit yet). A plain class, not a dataclass: the status line
    imports this module, and `dataclasses` (with `inspect`) costs it milliseconds."""

    __slots__ = ("branch", "commit")

    def __init__(self, branch: str | None, commit: str | None) -> None:
        self.branch, self.commit = branch, commit

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GitHead):
            return NotImplemented
        return (self.branch, self.commit) == (other.branch, other.commit)

    def __hash__(self) -> int:
        return hash((self.branch, self.commit))

    def __repr__(self) -> str:
        return f"GitHead(branch={self.branch!r}, commit={self.commit!r})"


def git_root(folder: Path) -> Path | None:
    """The nearest folder at or above `folder` with a `.git` (a folder, or a file in worktrees
    and submodules): attribution/folder.py's walk, as a Path."""
    found = repository_root(folder)
    return None if found is None else Path(found)


def _read(path: Path, limit: int = _MAX_FILE) -> str | None:
    try:
        with path.open("rb") as handle:
            return handle.read(limit).decode("utf-8", "replace")
    except OSError:
        return None


def git_dirs(root: Path) -> tuple[Path, Path] | None:
    """(the repository's own git folder, the common one holding refs) for a work tree root."""
    dot = root / ".git"
    if dot.is_dir():
        own = dot
    else:
        text = _read(dot)
        if text is None or not text.startswith("gitdir:"):
            return None
        own = Path(text[len("gitdir:") :].strip())
        if not own.is_absolute():
            own = (root / own).resolve()
    common = own
    pointer = _read(own / "commondir")
    if pointer is not None and pointer.strip():
        common = Path(pointer.strip())
        if not common.is_absolute():
            common = (own / common).resolve()
    return own, common


def _is_commit(text: str) -> bool:
    return len(text) in (40, 64) and all(c in "0123456789abcdef" for c in text)


def _packed(common: Path, ref: str) -> str | None:
    text = _read(common / "packed-refs", _MAX_PACKED)
    if text is None:
        return None
    for line in text.splitlines():
        if line.startswith(("#", "^")):
            continue
        commit, _, name = line.partition(" ")
        if name.strip() == ref and _is_commit(commit):
            return commit
    return None


def _resolve(own: Path, common: Path, ref: str, depth: int = 0) -> str | None:
    """The commit a ref names: a loose ref file (which may itself be `ref: …`), else
    `packed-refs`."""
    if depth > 5 or ".." in ref:
        return None
    for folder in (own, common):
        text = _read(folder / ref)
        if text is None:
            continue
        value = text.strip()
        if value.startswith("ref:"):
            return _resolve(own, common, value[4:].strip(), depth + 1)
        return value if _is_commit(value) else None
    return _packed(common, ref)


def read_head(root: Path) -> GitHead | None:
    """The branch and commit of the work tree at `root`; None when it is not a readable
    repository."""
    dirs = git_dirs(root)
    if dirs is None:
        return None
    own, common = dirs
    text = _read(own / "HEAD")
    if text is None:
        return None
    value = text.strip()
    if value.startswith("ref:"):
        ref = value[4:].strip()
        branch = ref[len(_HEADS) :] if ref.startswith(_HEADS) else ref
        return GitHead(branch or None, _resolve(own, common, ref))
    return GitHead(None, value if _is_commit(value) else None)


def _signature(root: Path) -> tuple[object, ...] | None:
    """What changes when the answer may: HEAD, the branch's loose ref and packed-refs."""
    dirs = git_dirs(root)
    if dirs is None:
        return None
    own, common = dirs
    parts: list[object] = []
    head = _read(own / "HEAD")
    parts.append(head)
    files = [common / "packed-refs"]
    if head is not None and head.startswith("ref:"):
        ref = head[4:].strip()
        files += [own / ref, common / ref]
    for path in files:
        try:
            stat = os.stat(path)
            parts.append((stat.st_mtime_ns, stat.st_size, stat.st_ino))
        except OSError:
            parts.append(None)
    return tuple(parts)


class HeadCache:
    """One `GitHead` per repository root, re-read only when its files changed.

    `fresh_seconds`: an answer checked that recently is trusted without looking at the files
    again. The writer attributes every row: under load, checking the signature per row (three
    reads and three stats in a linked worktree) cost about a tenth of the daemon's CPU
    (bench/README.md). A commit shows on rows written more than `fresh_seconds` after it."""

    def __init__(self, fresh_seconds: float = 0.0) -> None:
        self._lock = threading.Lock()
        self._fresh = fresh_seconds
        # root -> (signature, answer, monotonic time the signature was last checked)
        self._known: dict[str, tuple[tuple[object, ...], GitHead | None, float]] = {}

    def head(self, root: str | Path) -> GitHead | None:
        key = str(root)
        now = time.monotonic()
        with self._lock:
            known = self._known.get(key)
        if known is not None and now - known[2] < self._fresh:
            return known[1]
        try:
            signature = _signature(Path(key))
        except (OSError, ValueError):
            return None
        if signature is None:
            return None
        if known is not None and known[0] == signature:
            with self._lock:
                self._known[key] = (signature, known[1], now)
            return known[1]
        try:
            answer = read_head(Path(key))
        except (OSError, ValueError):
            answer = None
        with self._lock:
            if len(self._known) >= MAX_REPOSITORIES and key not in self._known:
                self._known.pop(next(iter(self._known)))
            self._known[key] = (signature, answer, now)
        return answer
