"""Parse the time expressions users type (`1h`, `7d`, `2026-11-01`) into ledger timestamps."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

_RELATIVE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


class TimeParseError(ValueError):
    pass


def ledger_timestamp(moment: datetime) -> str:
    """The ledger's fixed-width UTC text form, so string order is time order."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_moment(text: str, now: datetime | None = None) -> datetime:
    """`30m`, `1h`, `7d`, `2w` (ago), `today`, a date (`2026-11-01`, midnight UTC) or an ISO
    timestamp (naive means UTC)."""
    now = now or datetime.now(UTC)
    value = text.strip().lower()
    relative = _RELATIVE.match(value)
    if relative:
        amount, unit = int(relative.group(1)), relative.group(2)
        return now - timedelta(**{_UNITS[unit]: amount})
    if value == "today":
        return datetime.combine(now.date(), datetime.min.time(), tzinfo=UTC)
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime.combine(day, datetime.min.time(), tzinfo=UTC)
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise TimeParseError(
            f"cannot read {text!r} as a time: use 30m, 1h, 7d, 2w, today, "
            "a date like 2026-11-01 or an ISO timestamp"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
