"""Project slugs: slugs.py spells its rule as character sets (the status line cannot afford
`re`); these tests hold it to the regular expressions it replaced, on examples and on random
text, so config checks and attribution keep the exact rule they had."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from halton_meter.slugs import MAX_SLUG_LENGTH, is_slug, normalise_slug

# The rule as it was written before (slugs.py, issue 8).
SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9_:/-]*$")
# ... except that `$` let one trailing newline through `is_slug` ("acme\n" in a config file):
# the character sets refuse it, as the rule meant.
SLUG_FULL = re.compile(r"[a-z0-9][a-z0-9_:/-]*")
SEPARATORS = re.compile(r"[\s.]+")


def reference_normalise(value: str) -> str | None:
    text = SEPARATORS.sub("-", value.strip().lower()).strip("-")
    if not text or len(text) > MAX_SLUG_LENGTH or SLUG_RE.match(text) is None:
        return None
    return text


def test_examples() -> None:
    assert normalise_slug("My App") == "my-app"
    assert normalise_slug("site.com") == "site-com"
    assert normalise_slug("  a . \t b\u00a0c\u2003d ") == "a-b-c-d"  # Unicode spaces too
    assert normalise_slug("team/api:v2") == "team/api:v2"
    assert normalise_slug("-lead") == "lead"
    assert normalise_slug("_lead") is None  # a slug starts with a letter or digit
    assert normalise_slug("café") is None
    assert normalise_slug("") is None
    assert normalise_slug("x" * (MAX_SLUG_LENGTH + 1)) is None
    assert (
        is_slug("acme")
        and not is_slug("Acme")
        and not is_slug("acme\n")
        and not is_slug("a b")
        and not is_slug("")
    )


# Letters a slug may hold, letters it may not, and every kind of separator.
TEXT = st.text(
    alphabet=st.sampled_from("abzAZ09_:/-. \t\n\r\x0b\x0c\x1c\u00a0\u2003\u3000é€'\"#ßİ")
    | st.characters(),
    max_size=40,
)


@settings(max_examples=3000, deadline=None)
@given(TEXT)
def test_the_same_rule_as_the_regular_expressions(value: str) -> None:
    assert normalise_slug(value) == reference_normalise(value)
    assert is_slug(value) == (SLUG_FULL.fullmatch(value) is not None)
