"""mitmproxy's hook dispatch, without the per-event walk of every addon.

`AddonManager.trigger_event` walks the whole addon chain for every event of every request
(requestheaders, request, responseheaders, response, and an `update` after each): per addon a
context manager, a coroutine, a generator over its sub-addons, a `getattr`, and a fresh
`dataclasses.fields` walk for the arguments. Under load that was about a tenth of the daemon's
CPU, most of it for addons that have no handler for the event (bench/README.md).

`fast_dispatch` replaces it on one manager with the same semantics, resolved once per event
name: the handlers, in chain order (sub-addons after their parent, as `traverse` yields them);
arguments computed once per event; an exception in a handler logged as mitmproxy's `safecall`
does and the next handler still run; `AddonHalt` stops the event. The list is rebuilt whenever
the chain changes (mitmproxy's add and remove replace or grow `chain`).
"""

from __future__ import annotations

import inspect
import logging
import types
from collections.abc import Callable
from typing import Any

from mitmproxy import exceptions, hooks
from mitmproxy.addonmanager import AddonManager, cut_traceback, traverse

log = logging.getLogger("mitmproxy.addonmanager")  # where mitmproxy logs an addon's error

Handlers = tuple[Callable[..., Any], ...]


def fast_dispatch(manager: AddonManager) -> None:
    """Make `manager.trigger_event` look each event's handlers up once per chain."""
    handlers: dict[str, Handlers] = {}
    seen: list[tuple[int, int]] = [(0, -1)]

    def lookup(name: str) -> Handlers:
        chain = manager.chain
        key = (id(chain), len(chain))
        if seen[0] != key:
            handlers.clear()
            seen[0] = key
        found = handlers.get(name)
        if found is None:
            found = handlers[name] = _handlers(chain, name)
        return found

    async def trigger_event(event: hooks.Hook) -> None:
        found = lookup(event.name)
        if not found:
            return
        args = event.args()
        for func in found:
            try:
                result = func(*args)
                if result is not None and inspect.isawaitable(result):
                    await result
            except exceptions.AddonHalt:
                return
            except exceptions.OptionsError:
                raise
            except Exception as error:
                tb = cut_traceback(error.__traceback__, "trigger_event")
                log.error(f"Addon error: {error}", exc_info=(type(error), error, tb))

    manager.trigger_event = trigger_event  # type: ignore[method-assign]


def _handlers(chain: list[Any], name: str) -> Handlers:
    found: list[Callable[..., Any]] = []
    for addon in traverse(chain):
        func = getattr(addon, name, None)
        if func and callable(func) and not isinstance(func, types.ModuleType):
            found.append(func)
    return tuple(found)
