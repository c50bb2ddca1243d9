"""Load only the mitmproxy addons the daemon uses; skip mitmproxy's debug-only type checks.

`mitmproxy/addons/__init__.py` imports every default addon (onboarding with its web app,
browser, export, HAR, scripts, playback…) so that `default_addons()` can list them; and
`mitmproxy.master` imports that package (for `termlog`). The daemon builds its own short addon
list (capture/daemon.py) and never calls `default_addons()`, so that is about 16 MB of RSS and
a few hundred modules loaded for nothing (bench/README.md, memory).

`load_addons_on_demand()` registers a bare `mitmproxy.addons` package (same folder, no
`__init__` code run) before mitmproxy is imported, so `from mitmproxy.addons import core` loads
`core` alone. Called by `halton-meter daemon` only, before capture/daemon.py is imported; a
process that already imported the real package keeps it.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

PACKAGE = "mitmproxy.addons"


def load_addons_on_demand() -> bool:
    """True when the bare package is in place (now or already); False when the real one was
    imported first, or mitmproxy's layout is not the one expected (then nothing changes)."""
    present = sys.modules.get(PACKAGE)
    if present is not None:
        return getattr(present, "__halton_slim__", False) is True
    spec = importlib.util.find_spec("mitmproxy")
    if spec is None or spec.origin is None:
        return False
    folder = Path(spec.origin).parent / "addons"
    if not (folder / "core.py").is_file():
        return False
    import mitmproxy

    package = types.ModuleType(PACKAGE, "mitmproxy's addons, each imported on demand")
    package.__path__ = [str(folder)]
    package.__package__ = PACKAGE
    package.__file__ = str(folder / "__init__.py")
    package.__halton_slim__ = True  # type: ignore[attr-defined]
    sys.modules[PACKAGE] = package
    mitmproxy.addons = package  # type: ignore[attr-defined]
    return True


def skip_debug_typechecks() -> bool:
    """Drop the type check mitmproxy runs on every Request and Response it builds.

    `mitmproxy.http.MessageData.__post_init__` checks each field's type against its annotation
    (`typecheck.check_option_type`), and mitmproxy defines it only `if __debug__`: under
    `python -O` it does not exist. The objects are built by mitmproxy's own parsers and by
    `Response.make`, whose types are right by construction; the check was about 4 % of the
    daemon's CPU under load (bench/README.md). A no-op keeps the dataclass `__init__`s, which
    call `__post_init__`, working. False when mitmproxy no longer has it (nothing changed)."""
    from mitmproxy import http

    if "__post_init__" not in vars(http.MessageData):
        return False
    http.MessageData.__post_init__ = _no_check  # type: ignore[method-assign]
    return True


def _no_check(self: object) -> None:
    """What `MessageData.__post_init__` is under `python -O`: nothing."""
