"""Project slugs: what a project name may be, and what a value found on disk or in an
environment must become to be one. A low module of its own so config.py (checking the user's
names), attribution/ (turning folder and repository names into projects), capture/ (the proxy
URL's tag) and cli/ all share one rule without importing each other.

Folder and repository names are mostly fine as they are once lowercased; spaces and dots (a
repository called `My App` or `site.com`) become dashes. Anything else outside `a-z 0-9 - _ : /`
(accents, emoji, quotes) makes the value invalid, and the resolver tries its next layer.
"""

from __future__ import annotations

SLUG_CHARACTERS = "lowercase a-z 0-9 - _ : /"
MAX_SLUG_LENGTH = 100
# Plain character sets, not a regular expression: the status line imports this module and has
# 50 ms for the whole process, where `re` alone costs several (tests/test_slugs.py holds the
# pattern these match: ^[a-z0-9][a-z0-9_:/-]*$, and separators [\s.]+).
_FIRST = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")
_REST = _FIRST | frozenset("_:/-")


def is_slug(text: str) -> bool:
    """Whether `text` may be a project's name as it is (no normalising)."""
    return bool(text) and text[0] in _FIRST and all(character in _REST for character in text)


def not_a_slug(text: str) -> str:
    """The one wording of the refusal, for config errors and the CLI alike."""
    return f"{text!r} is not a project slug: use {SLUG_CHARACTERS}"


def _dashed(text: str) -> str:
    """Every run of whitespace and dots becomes one dash (str.isspace is what a regular
    expression's whitespace class matches)."""
    out: list[str] = []
    in_run = False
    for character in text:
        if character == "." or character.isspace():
            if not in_run:
                out.append("-")
            in_run = True
        else:
            out.append(character)
            in_run = False
    return "".join(out)


def normalise_slug(value: str) -> str | None:
    """The project slug for `value`, or None when it cannot be one."""
    text = _dashed(value.strip().lower()).strip("-")
    if not text or len(text) > MAX_SLUG_LENGTH or not is_slug(text):
        return None
    return text
