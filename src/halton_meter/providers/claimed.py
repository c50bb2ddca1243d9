"""`ClaimedHosts`: which (host, port) pairs the meter decrypts, as exact names and patterns.

Most providers have one API host (`api.openai.com`), but the clouds name a region or a
customer's resource in theirs (`bedrock-runtime.us-east-1.amazonaws.com`,
`us-central1-aiplatform.googleapis.com`, `acme.openai.azure.com`), so a host is claimed either
exactly or by an anchored pattern. The edge asks `claims` for every connection: one set lookup,
then at most one compiled alternation of the few patterns on that port, only when the host's
last two labels are ones a pattern can end with.

Standard library only and JSON-serialisable: the daemon writes the pairs it decrypts to a file
the edge reads (`runstate.CLAIMED_HOSTS_FILE`), so the edge learns hosts that come from the
price catalogue without importing it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

HostPattern = tuple[str, int]
_NAMED_GROUP = re.compile(r"\(\?P<\w+>")  # (regex matched against the whole host name, port)


def _tail(host: str) -> str:
    """The last two labels (`amazonaws.com`, `azure.com`): what a pattern's host ends with."""
    return ".".join(host.rsplit(".", 2)[-2:])


def pattern_tail(pattern: str) -> str | None:
    """The literal last two labels a host pattern ends with (`\\.amazonaws\\.com$` ->
    `amazonaws.com`), or None when the pattern does not end in literal labels (then it is
    tried for every host on its port)."""
    found = re.search(r"((?:[a-z0-9-]|\\\.)+)\$?$", pattern)
    if found is None:
        return None
    literal = found[1].replace("\\.", ".")
    labels = literal.split(".")
    if len(labels) < 3 or not all(labels[-2:]):  # need "<something>.label.label"
        return None
    return ".".join(labels[-2:])


@dataclass(frozen=True, slots=True)
class ClaimedHosts:
    """Exact (host, port) pairs plus anchored host patterns per port; names are lower case
    without a trailing dot."""

    exact: frozenset[tuple[str, int]] = frozenset()
    patterns: tuple[HostPattern, ...] = ()
    # (port, tail) -> one compiled alternation; tail None: patterns without a literal tail.
    _compiled: dict[tuple[int, str | None], re.Pattern[str]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        grouped: dict[tuple[int, str | None], list[str]] = {}
        for regex, port in self.patterns:
            grouped.setdefault((port, pattern_tail(regex)), []).append(regex)
        for key, regexes in grouped.items():
            # Patterns may name groups (hosts.py's `region`): unnamed here, so that several
            # can share one alternation.
            joined = "|".join(f"(?:{_NAMED_GROUP.sub('(?:', r)})" for r in regexes)
            self._compiled[key] = re.compile(joined)

    @classmethod
    def of(
        cls, exact: Iterable[tuple[str, int]], patterns: Iterable[HostPattern] = ()
    ) -> ClaimedHosts:
        return cls(
            frozenset((host.lower().rstrip("."), port) for host, port in exact),
            tuple(dict.fromkeys(patterns)),
        )

    def claims(self, host: str, port: int) -> bool:
        """Whether connections to host:port are decrypted (O(1) for exact names)."""
        host = host.lower().rstrip(".")
        if (host, port) in self.exact:
            return True
        if not self.patterns:
            return False
        compiled = self._compiled
        for tail in (_tail(host), None):
            regex = compiled.get((port, tail))
            if regex is not None and regex.fullmatch(host) is not None:
                return True
        return False

    def merged(self, other: ClaimedHosts) -> ClaimedHosts:
        return ClaimedHosts.of(self.exact | other.exact, (*self.patterns, *other.patterns))

    def mitmproxy_patterns(self) -> list[str]:
        """Anchored `host:port` regexes for mitmproxy's `allow_hosts`: it matches them
        unanchored otherwise, so `anthropic.com` would also match `anthropic.com.evil.net`."""
        out = [f"^{re.escape(host)}:{port}$" for host, port in sorted(self.exact)]
        out += [f"^(?:{regex}):{port}$" for regex, port in self.patterns]
        return out

    def to_json(self) -> str:
        return json.dumps(
            {"exact": sorted(self.exact), "patterns": [list(p) for p in self.patterns]},
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> ClaimedHosts:
        """Parse what `to_json` wrote; raises ValueError on anything else (a pattern that does
        not compile included), so a damaged file is never half-used."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("expected an object")
        exact = [(str(host), int(port)) for host, port in data.get("exact", [])]
        patterns = [(str(regex), int(port)) for regex, port in data.get("patterns", [])]
        for regex, _ in patterns:
            try:
                re.compile(regex)
            except re.error as error:
                raise ValueError(f"bad host pattern {regex!r}: {error}") from None
        return cls.of(exact, patterns)
