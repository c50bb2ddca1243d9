"""Redaction: every credential-shaped string becomes a marker naming its kind, before a body
is written anywhere.

Patterns run over the stored text (JSON as the client sent it, so a PEM key's line breaks may
be the two characters `\\n`). Each pattern is anchored on a provider's published key prefix or
a labelled assignment, so ordinary code and prose pass through unchanged; the generic ones
(`secret = …`, AWS secret keys) also need the value to look random (letters and digits mixed,
16+ characters).
"""

from __future__ import annotations

import functools
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass


def marker(kind: str) -> str:
    return f"[REDACTED:{kind}]"


@dataclass(frozen=True, slots=True)
class Pattern:
    kind: str
    regex: re.Pattern[str]
    # Which group is the secret (0: the whole match); the rest of the match is kept.
    group: int = 0
    # The value must mix letters and digits (generic patterns only).
    random_looking: bool = False


def _p(kind: str, pattern: str, group: int = 0, flags: int = 0, random: bool = False) -> Pattern:
    return Pattern(kind, re.compile(pattern, flags), group, random)


# JSON escapes a PEM key's newlines; a quote or backslash ends every other value.
_NL = r"(?:\\r|\\n|\r|\n)"
_VALUE_END = r"(?![A-Za-z0-9_-])"

BUILT_IN: tuple[Pattern, ...] = (
    _p(
        "private-key",
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----"
        r"(?:.*?-----END (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----|[^\"]*)",
        flags=re.DOTALL,
    ),
    _p("anthropic-key", r"\bsk-ant-[A-Za-z0-9_-]{20,}"),
    _p("openrouter-key", r"\bsk-or-v1-[A-Za-z0-9]{20,}"),
    _p("openai-key", r"\bsk-(?:proj-|svcacct-|admin-|None-)?[A-Za-z0-9_-]{20,}"),
    _p("stripe-key", r"\b[rs]k_(?:live|test)_[A-Za-z0-9]{16,}"),
    _p("google-api-key", r"\bAIza[0-9A-Za-z_-]{35}" + _VALUE_END),
    _p("google-oauth-token", r"\bya29\.[0-9A-Za-z_-]{20,}"),
    _p("xai-key", r"\bxai-[A-Za-z0-9]{20,}"),
    _p("groq-key", r"\bgsk_[A-Za-z0-9]{20,}"),
    _p("huggingface-token", r"\bhf_[A-Za-z0-9]{30,}"),
    _p("perplexity-key", r"\bpplx-[A-Za-z0-9]{20,}"),
    _p("replicate-token", r"\br8_[A-Za-z0-9]{30,}"),
    _p("github-token", r"\bgh[pousr]_[A-Za-z0-9]{36,}"),
    _p("github-token", r"\bgithub_pat_[A-Za-z0-9_]{22,}"),
    _p("gitlab-token", r"\bglpat-[A-Za-z0-9_-]{20,}"),
    _p("npm-token", r"\bnpm_[A-Za-z0-9]{36}"),
    _p("slack-token", r"\bxox[abposre]-[A-Za-z0-9-]{10,}"),
    _p("slack-webhook", r"https://hooks\.slack\.com/services/[A-Za-z0-9/]{20,}"),
    _p("aws-access-key", r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[A-Z0-9]{16}\b"),
    _p(
        "aws-secret-key",
        r"(?i)\b(?:aws_?secret_?access_?key|secret_?access_?key)\b\\?[\"']?\s*[:=]\s*\\?[\"']?"
        r"([A-Za-z0-9/+=]{40})(?![A-Za-z0-9/+=])",
        group=1,
    ),
    _p("jwt", r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"),
    _p("bearer-token", r"(?i)\bBearer\s+([A-Za-z0-9._~+/-]{16,}=*)", group=1),
    _p(
        "password",
        r"\b[a-z][a-z0-9+.-]{1,20}://[^\s:/@\"'\\]+:([^\s@/\"'\\]{1,200})@",
        group=1,
    ),
    _p(
        "secret",
        r"(?i)\b(?:api[_-]?key|apikey|secret(?:[_-]?key)?|access[_-]?token|auth[_-]?token|"
        r"client[_-]?secret|password|passwd)\b\\?[\"']?\s*[:=]\s*\\?[\"']?"
        r"([A-Za-z0-9_+/=-]{16,})(?![A-Za-z0-9_+/=-])",
        group=1,
        random=True,
    ),
)

_LETTER = re.compile(r"[A-Za-z]")
_DIGIT = re.compile(r"[0-9]")


def _random_looking(value: str) -> bool:
    return bool(_LETTER.search(value) and _DIGIT.search(value)) and "[REDACTED:" not in value


class Redactor:
    """The built-in patterns plus the user's (`[body_capture] redact`, named `custom`)."""

    def __init__(self, extra: Sequence[str] = ()) -> None:
        self.patterns = BUILT_IN + tuple(_p("custom", text) for text in extra)

    def redact(self, text: str) -> tuple[str, Counter[str]]:
        """The text with every secret replaced, and how many of each kind were found."""
        found: Counter[str] = Counter()
        for pattern in self.patterns:
            text = pattern.regex.sub(
                functools.partial(_replace, pattern=pattern, found=found), text
            )
        return text, found


def _replace(match: re.Match[str], pattern: Pattern, found: Counter[str]) -> str:
    whole = match.group(0)
    if whole.startswith("[REDACTED:") or "[REDACTED:" in match.group(pattern.group):
        return whole
    value = match.group(pattern.group)
    if pattern.random_looking and not _random_looking(value):
        return whole
    found[pattern.kind] += 1
    if pattern.group == 0:
        return marker(pattern.kind)
    start = match.start(pattern.group) - match.start()
    end = match.end(pattern.group) - match.start()
    return whole[:start] + marker(pattern.kind) + whole[end:]
