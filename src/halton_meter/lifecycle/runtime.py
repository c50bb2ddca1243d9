"""The services' private runtime on Windows: a copy of the meter's packages in the home folder.

Windows locks a running executable and every loaded DLL / .pyd. If the Task Scheduler tasks ran
the tool's own `halton-meterw.exe` or its venv's python.exe, `uv tool upgrade` / `pipx upgrade`
would fail while the meter runs (os error 32). So `init` stages a copy of what the meter
imports under `<home>/runtime/<version>/site-packages` and the tasks run the *base*
interpreter (the one the tool venv was made from, outside the tool's folder) with that copy
first on `sys.path`. The package manager then replaces nothing the services hold.

What is copied: the files (RECORD) of the `halton-meter` distribution and of every
distribution it requires, transitively, that lie in the environment's site folders; the meter's
own package from where it is imported (an editable install keeps it outside site-packages).
Not the whole site-packages: a developer's venv or a `pipx inject` holds far more than the
services import. Compiled bytecode (`__pycache__`) is left behind; the services write their own.

A folder is complete when its stamp file exists (written last): a copy cut short is redone.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import sysconfig
from collections.abc import Iterable, Iterator
from importlib import metadata
from pathlib import Path

import halton_meter
from halton_meter.paths import Paths

DISTRIBUTION = "halton-meter"
STAMP = ".staged.json"
# What the task's `-c` runs: the runtime folder (the next argument) first on sys.path, then the
# background entry point with the remaining arguments (`[--home DIR] edge | daemon ...`).
BOOTSTRAP = (
    "import sys; sys.path.insert(0, sys.argv.pop(1)); "
    "from halton_meter.cli.background import main; main()"
)
_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?")
_EXTRA = re.compile(r"""extra\s*==\s*['"]([^'"]+)['"]""")


def root(paths: Paths) -> Path:
    return paths.home / "runtime"


def folder(paths: Paths, version: str) -> Path:
    return root(paths) / version


def site_folder(paths: Paths, version: str) -> Path:
    """What goes first on the services' sys.path."""
    return folder(paths, version) / "site-packages"


def is_staged(paths: Paths, version: str) -> bool:
    return (folder(paths, version) / STAMP).is_file()


def base_interpreter() -> Path | None:
    """The interpreter the running environment was made from, when a tool upgrade leaves it
    alone; None when it lies inside the running environment (then there is nothing outside
    the tool's folder to run, and the tasks keep running the tool's own executable)."""
    base = Path(getattr(sys, "_base_executable", "") or sys.executable)
    if not base.is_file():
        return None
    # Compared as written, not resolved: a venv's python may be a link to the base one.
    prefix = Path(os.path.abspath(sys.prefix))
    if sys.prefix != sys.base_prefix and Path(os.path.abspath(base)).is_relative_to(prefix):
        return None
    return base


def windowless(interpreter: Path) -> Path:
    """pythonw beside the interpreter (no console window at logon), else the interpreter."""
    gui = interpreter.with_name(f"pythonw{interpreter.suffix}")
    return gui if gui.is_file() else interpreter


def _site_folders() -> list[Path]:
    found: list[Path] = []
    for key in ("purelib", "platlib"):
        path = Path(sysconfig.get_paths()[key]).resolve()
        if path not in found:
            found.append(path)
    return found


def _requirements(dist: metadata.Distribution, extras: set[str]) -> Iterator[tuple[str, set[str]]]:
    """(name, extras) of what `dist` requires with `extras`. Platform markers are not
    evaluated: a requirement that is not installed is skipped, one that is gets copied."""
    for line in dist.requires or []:
        requirement, _, marker = line.partition(";")
        match = _NAME.match(requirement)
        if match is None:
            continue
        wanted = set(_EXTRA.findall(marker))
        if wanted and not wanted & extras:
            continue
        inner = {e.strip() for e in (match.group(2) or "").split(",") if e.strip()}
        yield match.group(1), inner


def _closure() -> list[metadata.Distribution] | None:
    """The meter's distribution and everything it requires; None when it is not installed
    (run from a bare checkout) or a distribution has no file list."""
    found: dict[str, metadata.Distribution] = {}
    todo: list[tuple[str, set[str]]] = [(DISTRIBUTION, set())]
    while todo:
        name, extras = todo.pop()
        key = re.sub(r"[-_.]+", "-", name).lower()
        if key in found:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            if key == DISTRIBUTION:
                return None
            continue
        if dist.files is None:
            return None
        found[key] = dist
        todo += _requirements(dist, extras)
    return list(found.values())


def _copied(path: Path) -> bool:
    """Bytecode is rebuilt by the services; `.pth` files only act in a site folder."""
    return "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pth")


def sources() -> Iterator[tuple[Path, Path]]:
    """(file, its place under site-packages) for everything the services import."""
    sites = _site_folders()
    dists = _closure()
    seen: set[Path] = set()

    def under_site(path: Path) -> Iterator[tuple[Path, Path]]:
        for site in sites:
            if path.is_relative_to(site):
                relative = path.relative_to(site)
                if relative not in seen and _copied(relative):
                    seen.add(relative)
                    yield path, relative
                return

    if dists is None:  # copy the site folders whole
        for site in sites:
            for path in sorted(site.rglob("*")):
                if path.is_file():
                    yield from under_site(path)
    else:
        for dist in dists:
            for entry in dist.files or []:
                path = Path(str(dist.locate_file(entry))).resolve()
                if path.is_file():
                    yield from under_site(path)
    package = Path(halton_meter.__file__).resolve().parent
    if not any(package.is_relative_to(site) for site in sites):  # an editable install
        for path in sorted(package.rglob("*")):
            relative = Path("halton_meter") / path.relative_to(package)
            if path.is_file() and _copied(relative) and relative not in seen:
                seen.add(relative)
                yield path, relative


def stage(paths: Paths, version: str) -> bool:
    """Copy the running install into runtime/<version>, unless a complete copy is there;
    True when it copied."""
    if is_staged(paths, version):
        return False
    target = folder(paths, version)
    shutil.rmtree(target, ignore_errors=True)  # a copy cut short
    site = site_folder(paths, version)
    count = 0
    for source, relative in sources():
        destination = site / relative
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)
        count += 1
    stamp = {"version": version, "files": count, "from": sys.prefix}
    (target / STAMP).write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")
    return True


def prune(paths: Paths, keep: Iterable[str], in_use: Iterable[str]) -> list[str]:
    """Remove the runtime folders other than `keep` that no running service names in its
    command line (`in_use`: the running services' arguments). Best effort: a folder Windows
    still locks stays until the next `init`. The removed folders' names."""
    base = root(paths)
    if not base.is_dir():
        return []
    kept, used = set(keep), list(in_use)
    removed = []
    for entry in sorted(base.iterdir()):
        if entry.name in kept or not entry.is_dir():
            continue
        if any(Path(argument).is_relative_to(entry) for argument in used):
            continue
        (entry / STAMP).unlink(missing_ok=True)  # first: a half-removed folder is not "staged"
        shutil.rmtree(entry, ignore_errors=True)
        if not entry.exists():
            removed.append(entry.name)
    with contextlib.suppress(OSError):
        base.rmdir()  # only when empty
    return removed
