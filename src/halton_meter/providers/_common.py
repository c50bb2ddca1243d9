"""Small JSON helpers shared by the adapters.

Every helper is total: provider bodies are untrusted, so a wrong type or a missing key gives
``None`` instead of an exception.
"""

from __future__ import annotations

import json
from decimal import Decimal, InvalidOperation
from typing import Any

JsonDict = dict[str, Any]

USD_TICKS_PER_USD = 10**10  # xAI's `cost_in_usd_ticks` unit


def loads(data: bytes | str) -> Any:
    """Decode JSON, keeping non-integers as ``Decimal`` so provider costs stay exact.

    Returns ``None`` for anything that is not valid JSON.
    """
    try:
        return json.loads(data, parse_float=Decimal)
    except (ValueError, TypeError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None


def dumps(obj: object) -> str:
    """Compact JSON for ``raw_usage``; decimals go back out as JSON numbers."""
    return json.dumps(obj, separators=(",", ":"), default=_decimal_default)


def _decimal_default(value: object) -> float:
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def as_dict(value: object) -> JsonDict | None:
    return value if isinstance(value, dict) else None


def dig(obj: object, *keys: str) -> object:
    """``obj[k1][k2]…`` through dicts only; ``None`` as soon as a step is missing."""
    for key in keys:
        if not isinstance(obj, dict):
            return None
        obj = obj.get(key)
    return obj


def to_int(value: object) -> int | None:
    """A token count: an int (or integral JSON number), never a bool, never negative."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        return int(value) if value >= 0 else None
    return None


def get_int(obj: object, *keys: str) -> int | None:
    return to_int(dig(obj, *keys))


def get_str(obj: object, *keys: str) -> str | None:
    value = dig(obj, *keys)
    return value if isinstance(value, str) else None


def first_int(*values: int | None) -> int | None:
    """The first reported count, so a fallback location can be given after the usual one."""
    for value in values:
        if value is not None:
            return value
    return None


def minus(total: int | None, *parts: int | None) -> int | None:
    """``total`` minus the reported parts, floored at 0 so a provider's rounding can never
    produce a negative leaf."""
    if total is None:
        return None
    return max(0, total - sum(p for p in parts if p is not None))


def plus(*parts: int | None) -> int | None:
    """Sum of the reported parts; ``None`` only when none was reported."""
    known = [p for p in parts if p is not None]
    return sum(known) if known else None


def merge_running(dst: JsonDict, src: JsonDict) -> None:
    """Overwrite ``dst`` with ``src`` field by field (recursing into objects).

    Streams that repeat running totals must be merged this way, never summed; a ``null`` in a
    later event means "not repeated here", so it does not erase an earlier value.
    """
    for key, value in src.items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            merge_running(dst[key], value)
        else:
            dst[key] = dict(value) if isinstance(value, dict) else value


def decimal_str(value: object) -> str | None:
    """An exact, non-negative USD amount as a plain decimal string (no exponent, no float)."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        return None
    try:
        amount = Decimal(value)
    except (InvalidOperation, ValueError):
        return None
    if not amount.is_finite() or amount < 0:
        return None
    return format(amount.normalize(), "f")


def _openrouter_cost(usage: JsonDict) -> str | None:
    return decimal_str(usage.get("cost"))


def _perplexity_cost(usage: JsonDict) -> str | None:
    return decimal_str(dig(usage, "cost", "total_cost"))


def _xai_cost(usage: JsonDict) -> str | None:
    ticks = to_int(usage.get("cost_in_usd_ticks"))
    if ticks is None:
        return None
    return decimal_str(Decimal(ticks) / USD_TICKS_PER_USD)


# Only providers known to report money in these fields: elsewhere a `cost` key could mean
# anything (credits, a gateway's own estimate).
_COST_READERS = {
    "openrouter": _openrouter_cost,
    "perplexity": _perplexity_cost,
    "xai": _xai_cost,
}


def provider_cost(provider: str, usage: JsonDict | None) -> str | None:
    """The USD amount the provider itself says it charged, when it says so."""
    reader = _COST_READERS.get(provider)
    if reader is None or usage is None:
        return None
    return reader(usage)
