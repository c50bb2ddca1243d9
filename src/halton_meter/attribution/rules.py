"""`[[tagging.rules]]`: the user's own mapping, checked before anything the resolver finds.

A rule names a project and one to three conditions, all of which must hold: `path` (a glob
matched against the client's working folder and each folder above it), `process` (a glob on
the client's process name) and `user_agent` (a glob on the request's User-Agent, any case).
Rules are tried in file order; the first that holds wins.
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass
from pathlib import PurePath

RULE_CONDITIONS = ("path", "process", "user_agent")


@dataclass(frozen=True, slots=True)
class TaggingRule:
    project: str
    path: str | None = None
    process: str | None = None
    user_agent: str | None = None

    def describe(self) -> str:
        said = [f"{key} = {getattr(self, key)!r}" for key in RULE_CONDITIONS if getattr(self, key)]
        return f"rule {', '.join(said)} → {self.project}"

    def matches(self, process: str | None, cwd: str | None, user_agent: str | None) -> bool:
        if self.process is not None and not (
            process and fnmatch.fnmatchcase(process.lower(), self.process.lower())
        ):
            return False
        if self.user_agent is not None and not (
            user_agent and fnmatch.fnmatchcase(user_agent.lower(), self.user_agent.lower())
        ):
            return False
        return self.path is None or (cwd is not None and _path_matches(self.path, cwd))


def _path_matches(pattern: str, cwd: str) -> bool:
    expanded = os.path.normpath(os.path.expanduser(pattern))
    folder = PurePath(cwd)
    # fnmatch, not fnmatchcase: paths are case-insensitive on Windows and macOS by default.
    return any(fnmatch.fnmatch(str(c), expanded) for c in (folder, *folder.parents))


def first_match(
    rules: tuple[TaggingRule, ...], process: str | None, cwd: str | None, user_agent: str | None
) -> TaggingRule | None:
    for rule in rules:
        if rule.matches(process, cwd, user_agent):
            return rule
    return None
