"""Rate-limit and quota headers: which ones a row keeps, and what they say about each window.

`collect` runs in mitmproxy's `responseheaders` hook: one pass over the response's headers,
keeping every header of the known families whole (Anthropic's `anthropic-ratelimit-*` with the
whole `unified-*` subscription family, its `anthropic-priority-*`, OpenAI's `x-ratelimit-*`,
Codex's `x-codex-*`), so a member the provider adds tomorrow is kept too. Stored compactly: the
family prefix once, then each member's suffix (`{"anthropic-ratelimit-": {"unified-5h-…": …}}`).

`windows` reads such a snapshot back into windows (utilisation 0-1, reset, length) on the
reading side; names it does not know stay in the snapshot and are simply not windows.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

FAMILIES = ("anthropic-ratelimit-", "anthropic-priority-", "x-ratelimit-", "x-codex-")
# Members of a family that are not quota facts: Codex's sticky-routing token is opaque.
_SKIPPED = frozenset({"x-codex-turn-state"})
# Bounds against a hostile upstream: a row keeps at most this many headers of this length.
MAX_HEADERS = 64
MAX_VALUE = 200

Snapshot = dict[str, dict[str, str]]
# Response headers naming the account's organisation (not a credential): the quota account.
ORGANISATION_HEADERS = ("anthropic-organization-id", "openai-organization")


def collect(headers: Iterable[tuple[str, str]]) -> Snapshot | None:
    """The quota families among one response's headers; None when it has none. O(headers)."""
    found: Snapshot | None = None
    kept = 0
    for name, value in headers:
        lower = name.lower()
        if not (lower.startswith("x-") or lower.startswith("anthropic-")):
            continue
        for family in FAMILIES:
            if lower.startswith(family) and lower not in _SKIPPED:
                if kept >= MAX_HEADERS:
                    return found
                if found is None:
                    found = {}
                found.setdefault(family, {})[lower[len(family) :]] = value[:MAX_VALUE]
                kept += 1
                break
    return found


def dumps(snapshot: Snapshot) -> str:
    return json.dumps(snapshot, separators=(",", ":"), sort_keys=True)


def loads(text: str | None) -> Snapshot:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(value, dict):
        return {}
    return {
        family: {str(k): str(v) for k, v in members.items()}
        for family, members in value.items()
        if isinstance(members, dict)
    }


@dataclass(frozen=True, slots=True)
class Window:
    """One quota window as one response saw it. ``utilisation`` is a fraction (1.0 = full;
    Anthropic's can pass 1); ``resets_at`` and ``length_seconds`` are None when not said."""

    name: str  # e.g. "unified-5h", "unified-7d", "requests", "codex-primary"
    utilisation: float
    resets_at: float | None
    length_seconds: int | None
    status: str | None = None
    limit: int | None = None
    remaining: int | None = None


_NUMBER = re.compile(r"^-?\d+(\.\d+)?$")
_CLAIM_LENGTH = re.compile(r"^(\d+)([hd])(?:_|$)")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|us|µs|ns|h|m|s)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_MINUTE = 60  # the standard API limits are per minute (requests, tokens)


def _number(text: str | None) -> float | None:
    if text is None or not _NUMBER.match(text.strip()):
        return None
    return float(text.strip())


def _epoch(text: str | None) -> float | None:
    """Unix seconds, or an RFC 3339 moment (Anthropic's standard limits)."""
    if text is None:
        return None
    number = _number(text)
    if number is not None:
        return number
    try:
        return datetime.fromisoformat(text.strip().replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _duration(text: str | None) -> float | None:
    """OpenAI's Go-style durations: ``1s``, ``6m0s``, ``8.64s``, ``12ms``."""
    if not text:
        return None
    parts = _DURATION.findall(text.strip())
    if not parts or "".join(n + u for n, u in parts) != text.strip():
        return None
    return sum(float(n) * _UNITS[u] for n, u in parts)


def windows(snapshot: Snapshot, observed_at: float) -> list[Window]:
    """Every window a snapshot describes, in a stable order."""
    found: list[Window] = []
    found += _anthropic_unified(snapshot.get("anthropic-ratelimit-", {}))
    found += _remaining_style(snapshot.get("anthropic-ratelimit-", {}), "")
    found += _remaining_style(snapshot.get("anthropic-priority-", {}), "priority-")
    found += _openai(snapshot.get("x-ratelimit-", {}), observed_at)
    found += _codex(snapshot.get("x-codex-", {}), observed_at)
    return found


def _anthropic_unified(members: dict[str, str]) -> list[Window]:
    """``unified-<claim>-utilization`` for any claim (5h, 7d, 7d_oi, overage, …)."""
    result = []
    for key in sorted(members):
        if not (key.startswith("unified-") and key.endswith("-utilization")):
            continue
        claim = key[len("unified-") : -len("-utilization")]
        utilisation = _number(members[key])
        if utilisation is None or not claim:
            continue
        length = None
        if match := _CLAIM_LENGTH.match(claim):
            length = int(match[1]) * (3600 if match[2] == "h" else 86400)
        result.append(
            Window(
                name=f"unified-{claim}",
                utilisation=utilisation,
                resets_at=_epoch(members.get(f"unified-{claim}-reset")),
                length_seconds=length,
                status=members.get(f"unified-{claim}-status"),
            )
        )
    return result


def _remaining_style(members: dict[str, str], label: str) -> list[Window]:
    """``<kind>-limit``, ``<kind>-remaining``, ``<kind>-reset`` (Anthropic's API limits)."""
    result = []
    for key in sorted(members):
        if not key.endswith("-limit") or key.startswith("unified-"):
            continue
        kind = key[: -len("-limit")]
        limit = _number(members[key])
        remaining = _number(members.get(f"{kind}-remaining"))
        if limit is None or remaining is None or limit <= 0:
            continue
        result.append(
            Window(
                name=f"{label}{kind}",
                utilisation=round(1 - remaining / limit, 6),
                resets_at=_epoch(members.get(f"{kind}-reset")),
                length_seconds=_MINUTE,
                limit=int(limit),
                remaining=int(remaining),
            )
        )
    return result


def _openai(members: dict[str, str], observed_at: float) -> list[Window]:
    """``limit-<kind>``, ``remaining-<kind>``, ``reset-<kind>`` (a duration from now)."""
    result = []
    for key in sorted(members):
        if not key.startswith("limit-"):
            continue
        kind = key[len("limit-") :]
        limit = _number(members[key])
        remaining = _number(members.get(f"remaining-{kind}"))
        if limit is None or remaining is None or limit <= 0:  # Azure sends -1/0: absent
            continue
        after = _duration(members.get(f"reset-{kind}"))
        result.append(
            Window(
                name=kind,
                utilisation=round(1 - remaining / limit, 6),
                resets_at=None if after is None else observed_at + after,
                length_seconds=_MINUTE,
                limit=int(limit),
                remaining=int(remaining),
            )
        )
    return result


def _codex(members: dict[str, str], observed_at: float) -> list[Window]:
    """``[<limit>-]primary|secondary-used-percent`` with ``-window-minutes``, ``-reset-at``
    (Unix seconds) or ``-reset-after-seconds``; classified by length, never by position."""
    result = []
    for key in sorted(members):
        if not key.endswith("-used-percent"):
            continue
        base = key[: -len("-used-percent")]
        percent = _number(members[key])
        if percent is None:
            continue
        minutes = _number(members.get(f"{base}-window-minutes"))
        resets_at = _epoch(members.get(f"{base}-reset-at"))
        if resets_at is None:
            after = _number(members.get(f"{base}-reset-after-seconds"))
            resets_at = None if after is None else observed_at + after
        result.append(
            Window(
                name=f"codex-{base}",
                utilisation=percent / 100,
                resets_at=resets_at,
                length_seconds=None if minutes is None else int(minutes * 60),
            )
        )
    return result
