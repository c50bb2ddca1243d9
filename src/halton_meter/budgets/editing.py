"""Changing `[[budgets]]` in config.toml with tomlkit, so the user's comments and layout stay.

Every change is validated by parsing the whole new text with config.py before it is written
(atomically): a command can never leave config.toml invalid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomlkit
from tomlkit.items import AoT, Table

from halton_meter.config import Config, parse_config
from halton_meter.runstate import write_atomic


class EditError(ValueError):
    pass


def _document(path: Path) -> tomlkit.TOMLDocument:
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    return tomlkit.parse(text)


def _tables(document: tomlkit.TOMLDocument) -> AoT:
    budgets = document.get("budgets")
    if budgets is None:
        budgets = tomlkit.aot()
        document.append("budgets", budgets)
    if not isinstance(budgets, AoT):
        raise EditError("config.toml's budgets is not an array of [[budgets]] tables")
    return budgets


def _find(tables: AoT, name: str) -> int | None:
    for index, table in enumerate(tables):
        if table.get("name") == name:
            return index
    return None


def _save(path: Path, document: tomlkit.TOMLDocument) -> Config:
    text = tomlkit.dumps(document)
    config = parse_config(text, path)  # raises ConfigError naming the key and line
    write_atomic(path, text)
    return config


def add_budget(path: Path, values: dict[str, Any]) -> Config:
    document = _document(path)
    tables = _tables(document)
    if _find(tables, values["name"]) is not None:
        raise EditError(f"a budget named {values['name']!r} exists; use `budget edit`")
    table = tomlkit.table()
    for key, value in values.items():
        if value is not None:
            table[key] = value
    tables.append(table)
    return _save(path, document)


def edit_budget(path: Path, name: str, changes: dict[str, Any], remove: tuple[str, ...]) -> Config:
    document = _document(path)
    tables = _tables(document)
    index = _find(tables, name)
    if index is None:
        raise EditError(f"no budget named {name!r}")
    table: Table = tables[index]
    for key in remove:
        if key in table:
            del table[key]
    for key, value in changes.items():
        if value is not None:
            table[key] = value
    return _save(path, document)


def remove_budget(path: Path, name: str) -> Config:
    document = _document(path)
    tables = _tables(document)
    index = _find(tables, name)
    if index is None:
        raise EditError(f"no budget named {name!r}")
    del tables[index]
    if not len(tables):
        del document["budgets"]
    return _save(path, document)
