"""Real Anthropic SDK streams through the meter, for the drain, restart and upgrade tests: each
stream runs in its own thread with its own client (the SDK's httpx pool), through a proxy URL
that names a project, against the local TLS fake under the real host name."""

from __future__ import annotations

import ssl
import threading
from dataclasses import dataclass, field
from pathlib import Path

import anthropic
import httpx2

# Each stream sends EVENTS events DELAY_MS apart: about 3 s, long enough to span a stop.
EVENTS = 16
DELAY_MS = 200


@dataclass
class Streams:
    """`count` streams started at once; `started` is set once every one has its first event."""

    proxy: str  # http://project:meter@127.0.0.1:port
    bundle: Path
    count: int = 10
    events: int = EVENTS
    delay_ms: int = DELAY_MS
    completed: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._first = threading.Semaphore(0)
        self._threads = [
            threading.Thread(target=self._one, args=(i,), daemon=True) for i in range(self.count)
        ]

    def start(self, timeout: float = 30.0) -> Streams:
        """Start them all and return once each has received its first event."""
        for thread in self._threads:
            thread.start()
        for _ in range(self.count):
            if not self._first.acquire(timeout=timeout):
                raise AssertionError(f"not every stream started: errors {self.errors}")
        return self

    def join(self, timeout: float = 60.0) -> None:
        for thread in self._threads:
            thread.join(timeout)

    def _one(self, index: int) -> None:
        context = ssl.create_default_context(cafile=str(self.bundle))
        try:
            with httpx2.Client(proxy=self.proxy, verify=context, timeout=60) as http:
                client = anthropic.Anthropic(api_key="test-key", http_client=http, max_retries=0)
                with client.messages.stream(
                    model="claude-sonnet-4-5",
                    max_tokens=64,
                    messages=[{"role": "user", "content": "hi"}],
                    extra_headers={
                        "x-fake-events": str(self.events),
                        "x-fake-delay-ms": str(self.delay_ms),
                    },
                ) as stream:
                    first = True
                    for _ in stream.text_stream:
                        if first:
                            self._first.release()
                            first = False
                    message = stream.get_final_message()
            if first:
                self._first.release()
            self.texts.append("".join(b.text for b in message.content if b.type == "text"))
            self.completed.append(index)
        except Exception as error:  # every client error counts against the meter
            self.errors.append(f"stream {index}: {error!r}")
            self._first.release()
