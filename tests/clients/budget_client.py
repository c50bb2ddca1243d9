"""Run one sdk_client call and print how it ended: the SDK's own error class and message when
the meter refused it (budgets), or "ok"."""

from __future__ import annotations

import json
import sys

from tests.clients.sdk_client import KINDS

if __name__ == "__main__":
    try:
        KINDS[sys.argv[1]]()
        print(json.dumps({"outcome": "ok"}))
    except Exception as error:
        status = getattr(error, "status_code", None) or getattr(error, "code", None)
        print(json.dumps({"outcome": "error", "class": type(error).__name__,
                          "module": type(error).__module__, "status": status,
                          "message": str(error)}))  # fmt: skip
