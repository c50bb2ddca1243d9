"""The package's layers, as docs/architecture.md's layout table states them, checked against
every import in src/ (imports inside functions included).

Each part may import only parts listed after it in `LAYERS` (and itself). A new folder or
top-level module must be placed here and in the docs table, or this test fails.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "halton_meter"
DOCS = ROOT / "docs" / "architecture.md"

# Top first. A part may import the parts below it, never one above it.
LAYERS: tuple[str, ...] = (
    "__main__.py",
    "launch.py",
    "cli/",
    "doctor.py",
    "guard.py",
    "statusline.py",
    "capture/",
    "teamserver/",
    "edge/",
    "api/",
    "budgets/",
    "export/",
    "lifecycle/",
    "reconcile/",
    "cloud/",
    "bodies/",
    "reprice.py",
    "report.py",
    "ledger/",
    "config.py",
    "attribution/",
    "pricing/",
    "providers/",
    "dashboard/",
    "logs.py",
    "timewindow.py",
    "budget_model.py",
    "money.py",
    "slugs.py",
    "body_capture.py",
    "decoding.py",
    "upstream.py",
    "unmetered.py",
    "paths.py",
    "runstate.py",
    "__init__.py",
)


def _part_of(module: str) -> str | None:
    """The layer of a dotted module name inside the package (None outside it)."""
    pieces = module.split(".")
    if pieces[0] != "halton_meter":
        return None
    if len(pieces) == 1:
        return "__init__.py"
    if (PACKAGE / pieces[1]).is_dir():
        return pieces[1] + "/"
    return pieces[1] + ".py"


def _imports(path: Path) -> set[str]:
    """Every halton_meter module a file imports, wherever the import statement stands."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] == "halton_meter"}


def _file_part(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    return relative.parts[0] + "/" if len(relative.parts) > 1 else relative.name


def test_every_part_of_the_package_has_a_layer() -> None:
    parts = {
        entry.name + "/" if entry.is_dir() else entry.name
        for entry in PACKAGE.iterdir()
        if entry.name != "__pycache__" and (entry.is_dir() or entry.suffix == ".py")
    }
    assert parts == set(LAYERS)


def test_imports_point_down_the_layers() -> None:
    rank = {part: index for index, part in enumerate(LAYERS)}
    upward: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        importer = _file_part(path)
        for module in _imports(path):
            target = _part_of(module)
            # `from halton_meter import __version__` names no part: skip such names.
            if target in rank and target != importer and rank[target] < rank[importer]:
                upward.append(f"{path.relative_to(PACKAGE)} imports {module} ({target})")
    assert upward == []


def test_the_docs_layout_table_lists_the_layers_in_order() -> None:
    table = DOCS.read_text(encoding="utf-8").split("## Code layout", 1)[1].split("\n## ", 1)[0]
    listed = [
        cell
        for row in re.findall(r"^\| ([^|]+) \|", table, flags=re.MULTILINE)
        for cell in re.findall(r"`([^`]+)`", row)
    ]
    assert listed == [part for part in LAYERS if part != "__init__.py"]
