"""Project slugs: what a value found on disk or in an environment must become to be a project.

Folder and repository names are mostly fine as they are once lowercased; spaces and dots (a
repository called `My App` or `site.com`) become dashes. Anything else outside `a-z 0-9 - _ : /`
(accents, emoji, quotes) makes the value invalid, and the resolver tries its next layer.
"""

from __future__ import annotations

import re

from halton_meter.config import SLUG_RE

MAX_SLUG_LENGTH = 100
_SEPARATORS = re.compile(r"[\s.]+")


def normalise_slug(value: str) -> str | None:
    """The project slug for `value`, or None when it cannot be one."""
    text = _SEPARATORS.sub("-", value.strip().lower()).strip("-")
    if not text or len(text) > MAX_SLUG_LENGTH or not SLUG_RE.match(text):
        return None
    return text
