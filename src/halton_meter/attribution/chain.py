"""The resolver chain: from a client process to a project, first match wins.

The order is the product's promise (docs/architecture.md): the exact tag and config rules are
applied per request by `Attributor`; this module runs everything after them, once per client
connection, on a worker thread:

    HALTON_PROJECT in the process environment → `.haltonrc` upward from its cwd → IDE workspace
    hints on its and its parents' command lines → the git repository root's name → the parents'
    cwds (`.haltonrc`, git) → container → cwd basename → `[tagging] default_project`

A value that is not a valid slug is skipped with a log line and the next layer is tried. What
each layer saw is kept (without command lines or environment beyond the one variable) so
`halton-meter why` can explain a row.
"""

from __future__ import annotations

import logging
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

from halton_meter.attribution.gitrefs import git_root
from halton_meter.attribution.process import (
    ProcessFacts,
    ProcessGone,
    container_hostname,
    read_process,
)
from halton_meter.slugs import normalise_slug

log = logging.getLogger(__name__)

TAG = "tag"
RULE = "rule"
ENV = "env"
HALTONRC = "haltonrc"
IDE = "ide"
GIT = "git"
PARENT = "parent"
CONTAINER = "container"
CWD = "cwd"
DEFAULT = "default"
LAYERS = (TAG, RULE, ENV, HALTONRC, IDE, GIT, PARENT, CONTAINER, CWD, DEFAULT)

MAX_PARENTS = 8  # the parent walk stops here (or at pid 1)
HALTONRC_NAME = ".haltonrc"
IDE_NAMES = frozenset(
    {"code", "code-insiders", "codium", "vscodium", "cursor", "windsurf", "electron"}
)


@dataclass(frozen=True, slots=True)
class Decision:
    project: str
    layer: str
    saw: str  # what decided it, in words: "git repository /home/u/acme"


@dataclass(frozen=True, slots=True)
class ClientContext:
    """Everything known about one client connection once the chain has run."""

    pid: int | None
    process: str | None
    cwd: str | None
    decision: Decision
    skipped: tuple[str, ...] = ()  # invalid values that fell through, and why
    note: str | None = None  # why there was no process to look at
    # `body_capture` of the nearest `.haltonrc` at or above the cwd that sets it: "on", "off"
    # or None (bodies/policy.py decides with it).
    body_capture: str | None = None
    # The git work tree the client runs in (its cwd's), whatever layer decided the project:
    # each row reads its branch and commit from it (attribution/gitrefs.py).
    repo: str | None = None

    def detail(self) -> dict[str, object]:
        out: dict[str, object] = {"pid": self.pid, "process": self.process, "cwd": self.cwd}
        if self.skipped:
            out["skipped"] = list(self.skipped)
        if self.note:
            out["note"] = self.note
        return out


class ProcessReader(Protocol):
    def __call__(self, pid: int, *, ancestor: bool = False) -> ProcessFacts: ...


@dataclass(slots=True)
class _Run:
    default_project: str
    skipped: list[str] = field(default_factory=list)

    def slug(self, layer: str, value: str, where: str) -> str | None:
        slug = normalise_slug(value)
        if slug is None:
            message = f"{layer}: {value!r} from {where} is not a valid project name"
            log.warning("attribution: %s; trying the next layer", message)
            self.skipped.append(message)
        return slug


def no_process(default_project: str, note: str, pid: int | None = None) -> ClientContext:
    return ClientContext(
        pid,
        None,
        None,
        Decision(default_project, DEFAULT, f"[tagging] default_project ({note})"),
        note=note,
    )


GONE = "the process had exited before the lookup"


def resolve_process(
    pid: int,
    default_project: str,
    read: ProcessReader = read_process,
    facts: ProcessFacts | None = None,
) -> ClientContext:
    """Run the chain on process `pid` (the client's end of the connection); `facts` when the
    caller has already read them."""
    if facts is None:
        try:
            facts = read(pid)
        except ProcessGone:
            return no_process(default_project, GONE, pid)
    run = _Run(default_project)
    decision = _decide(facts, run, read)
    cwd = str(facts.cwd) if facts.cwd else None
    capture = haltonrc_body_capture(facts.cwd) if facts.cwd is not None else None
    repo = git_root(facts.cwd) if facts.cwd is not None else None
    return ClientContext(
        pid,
        facts.name or None,
        cwd,
        decision,
        tuple(run.skipped),
        body_capture=capture,
        repo=str(repo) if repo else None,
    )


def _decide(facts: ProcessFacts, run: _Run, read: ProcessReader) -> Decision:
    value = facts.environ.get("HALTON_PROJECT")
    if value and (slug := run.slug(ENV, value, "HALTON_PROJECT")):
        return Decision(slug, ENV, "HALTON_PROJECT in the process environment")
    if facts.cwd is not None and (found := _haltonrc(facts.cwd, run)):
        return Decision(found[0], HALTONRC, f"{found[1]}")
    parents = _Parents(facts, read)
    for process in (facts, *parents):
        hint = ide_hint(process.cmdline, process.name, process.cwd)
        if hint and (slug := run.slug(IDE, hint[0], hint[1])):
            return Decision(slug, IDE, f"{hint[1]} on the command line of pid {process.pid}")
    root = git_root(facts.cwd) if facts.cwd is not None else None
    if root is not None and (slug := run.slug(GIT, root.name, f"git repository {root}")):
        return Decision(slug, GIT, f"git repository {root}")
    for parent in parents:
        if parent.cwd is None:
            continue
        where = f"pid {parent.pid} ({parent.name}) in {parent.cwd}"
        if found := _haltonrc(parent.cwd, run):
            return Decision(found[0], PARENT, f"{found[1]} of parent {where}")
        if (root := git_root(parent.cwd)) and (slug := run.slug(PARENT, root.name, where)):
            return Decision(slug, PARENT, f"git repository {root} of parent {where}")
    if facts.container is not None:
        hostname = container_hostname(facts)
        if hostname and (slug := run.slug(CONTAINER, f"{facts.container}:{hostname}", "cgroup")):
            return Decision(slug, CONTAINER, f"{facts.container} container {hostname}")
    name = facts.cwd.name if facts.cwd is not None else ""
    if name and (slug := run.slug(CWD, name, f"cwd {facts.cwd}")):
        return Decision(slug, CWD, f"working folder {facts.cwd}")
    return Decision(run.default_project, DEFAULT, "[tagging] default_project (nothing matched)")


class _Parents:
    """Up to MAX_PARENTS ancestors, nearest first, stopping at pid 1 or an exited parent; read
    once, when the IDE layer first asks, and reused by the parent walk."""

    def __init__(self, facts: ProcessFacts, read: ProcessReader) -> None:
        self._facts, self._read = facts, read
        self._seen: list[ProcessFacts] | None = None

    def __iter__(self) -> Iterator[ProcessFacts]:
        if self._seen is None:
            self._seen = []
            pid = self._facts.ppid
            for _ in range(MAX_PARENTS):
                if pid is None or pid <= 1:
                    break
                try:
                    parent = self._read(pid, ancestor=True)
                except ProcessGone:
                    break
                self._seen.append(parent)
                pid = parent.ppid
        return iter(self._seen)


def _upward(folder: Path) -> Iterator[Path]:
    yield folder
    yield from folder.parents


def _haltonrc(folder: Path, run: _Run) -> tuple[str, str] | None:
    """(project, "where") from the nearest `.haltonrc` at or above `folder` that names a valid
    project; a broken one is logged and the search goes on upward."""
    for candidate in _upward(folder):
        path = candidate / HALTONRC_NAME
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        try:
            value = load_haltonrc(text).get("project")
        except tomllib.TOMLDecodeError as error:
            message = f"{HALTONRC}: {path} is not valid TOML ({error})"
            log.warning("attribution: %s; trying the next layer", message)
            run.skipped.append(message)
            continue
        if not isinstance(value, str):
            run.skipped.append(f'{HALTONRC}: {path} has no project = "…" line')
            continue
        if slug := run.slug(HALTONRC, value, str(path)):
            return slug, str(path)
    return None


# `body_capture = on` is what users write, though TOML wants `"on"` or `true`.
_BARE_SWITCH = re.compile(r"^(\s*body_capture\s*=\s*)(on|off)(\s*(?:#.*)?)$", re.MULTILINE)


def load_haltonrc(text: str) -> dict[str, object]:
    """A `.haltonrc` as TOML, accepting the bare `body_capture = on|off`."""
    return tomllib.loads(_BARE_SWITCH.sub(r'\1"\2"\3', text))


def haltonrc_body_capture(folder: Path) -> str | None:
    """`on`/`off` from the nearest `.haltonrc` at or above `folder` that sets `body_capture`
    (`true`/`false` also accepted); None when none does."""
    for candidate in _upward(folder):
        try:
            text = (candidate / HALTONRC_NAME).read_text(encoding="utf-8")
            value = load_haltonrc(text).get("body_capture")
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            continue
        if value in (True, "on"):
            return "on"
        if value in (False, "off"):
            return "off"
    return None


def ide_hint(
    cmdline: tuple[str, ...], name: str, cwd: Path | None = None
) -> tuple[str, str] | None:
    """(workspace name, what said so) from a VS Code / Cursor / Windsurf command line:
    `--folder-uri`, a `.code-workspace` file (the workspace's label), or, for the editor itself,
    a folder argument.

    A relative argument (`code .`) means a folder under the editor's own working folder `cwd`,
    never the daemon's: without that cwd it is not a hint at all."""
    arguments = list(cmdline[1:])
    for index, argument in enumerate(arguments):
        key, _, inline = argument.partition("=")
        if key in ("--folder-uri", "--file-uri"):
            value = inline or (arguments[index + 1] if index + 1 < len(arguments) else "")
            label = _uri_name(value)
            if label and (key == "--folder-uri" or label[0].endswith(".code-workspace")):
                return label[0].removesuffix(".code-workspace"), f"{key} {label[1]}"
        if argument.endswith(".code-workspace") and not argument.startswith("-"):
            workspace = _against(argument, cwd) or Path(argument)
            return workspace.name.removesuffix(".code-workspace"), f"workspace {workspace}"
    executable = Path(cmdline[0]).name.lower().removesuffix(".exe") if cmdline else ""
    editor = name in IDE_NAMES or executable in IDE_NAMES
    if editor and not any(a.startswith("--type=") for a in arguments):
        for argument in arguments:
            if argument.startswith("-"):
                continue
            folder = _against(argument, cwd)
            if folder is not None and folder.is_dir():
                folder = folder.resolve()
                return folder.name, f"folder {folder}"
    return None


def _against(argument: str, cwd: Path | None) -> Path | None:
    """`argument` as the process meant it: absolute as it is, relative under its own `cwd`
    (None when that is unknown: the daemon's own folder would be a wrong answer)."""
    path = Path(argument)
    if path.is_absolute():
        return path
    return cwd / path if cwd is not None else None


def _uri_name(uri: str) -> tuple[str, str] | None:
    """The last path segment of a file:// or vscode-remote:// URI, and the path itself."""
    parts = urlsplit(uri)
    path = unquote(parts.path if parts.scheme else uri).rstrip("/")
    name = path.rsplit("/", 1)[-1]
    return (name, path) if name else None
