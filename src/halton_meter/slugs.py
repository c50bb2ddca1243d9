"""Project slugs: what a project name may be, and what a value found on disk or in an
environment must become to be one. A low module of its own so config.py (checking the user's
names), attribution/ (turning folder and repository names into projects), capture/ (the proxy
URL's tag) and cli/ all share one rule without importing each other.

Folder and repository names are mostly fine as they are once lowercased; spaces and dots (a
repository called `My App` or `site.com`) become dashes. Anything else outside `a-z 0-9 - _ : /`
(accents, emoji, quotes) makes the value invalid, and the resolver tries its next layer.
"""

from __future__ import annotations

import re

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_:/-]*$")
SLUG_CHARACTERS = "lowercase a-z 0-9 - _ : /"
MAX_SLUG_LENGTH = 100
_SEPARATORS = re.compile(r"[\s.]+")


def is_slug(text: str) -> bool:
    """Whether `text` may be a project's name as it is (no normalising)."""
    return SLUG_RE.match(text) is not None


def not_a_slug(text: str) -> str:
    """The one wording of the refusal, for config errors and the CLI alike."""
    return f"{text!r} is not a project slug: use {SLUG_CHARACTERS}"


def normalise_slug(value: str) -> str | None:
    """The project slug for `value`, or None when it cannot be one."""
    text = _SEPARATORS.sub("-", value.strip().lower()).strip("-")
    if not text or len(text) > MAX_SLUG_LENGTH or not is_slug(text):
        return None
    return text
