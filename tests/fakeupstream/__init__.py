"""A local, deterministic fake of the LLM providers over TLS, for integration tests and benchmarks.

Typical use::

    with FakeUpstreamProcess(tmp_path / "pki") as fake:
        client = anthropic.Anthropic(base_url=fake.base_url, http_client=httpx2.Client(
            verify=fake.ssl_context()))
        ...
        assert fake.requests()[0]["path"] == "/v1/messages"

Scenarios are chosen per request with `x-fake-scenario` (see `server.py`); usage numbers come
from `catalog.py`.
"""

from .certs import TestPKI, make_test_pki
from .client import FakeUpstreamControl, FakeUpstreamProcess
from .server import FakeUpstream, start_in_thread

__all__ = [
    "FakeUpstream",
    "FakeUpstreamControl",
    "FakeUpstreamProcess",
    "TestPKI",
    "make_test_pki",
    "start_in_thread",
]
