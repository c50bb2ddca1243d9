"""Halton Meter's corrections to the catalogue: data in `corrections.toml` (shipped inside the
package), read once by the parser of the user's `[[pricing.overrides]]`. See that file for what
a correction is and how it applies."""

from __future__ import annotations

import tomllib
from importlib.resources import files
from typing import Final

from .overrides import PriceOverride, parse_overrides

CORRECTIONS_FILE: Final = "corrections.toml"


def load_corrections(text: str) -> tuple[PriceOverride, ...]:
    """Parse corrections TOML (a `[[corrections]]` array); raises OverrideError or
    TOMLDecodeError on a bad file."""
    entries = tomllib.loads(text).get("corrections", [])
    return parse_overrides(entries, lambda index, key: None, corrections=True)


CORRECTIONS: Final = load_corrections(
    files(__package__).joinpath(CORRECTIONS_FILE).read_text(encoding="utf-8")
)
