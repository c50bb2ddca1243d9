"""The stream tap: forwards every chunk as it arrives and lets a parser look at a copy.

mitmproxy calls the tap once per received chunk and once with b"" at the end, and forwards
what it returns. A tap that raised would make mitmproxy drop that chunk from the client's
stream, so everything that could fail is caught here and only turns the parsing off.
"""

from __future__ import annotations

import logging
import time

from halton_meter.capture.record import CapturedCall
from halton_meter.decoding import ChunkDecoder
from halton_meter.providers import InjectedUsageFilter
from halton_meter.providers.base import StreamParser

log = logging.getLogger(__name__)


class StreamTap:
    __slots__ = ("_call", "_decoder", "_filter", "_parser")

    def __init__(
        self,
        call: CapturedCall,
        parser: StreamParser,
        decoder: ChunkDecoder | None,
        usage_filter: InjectedUsageFilter | None = None,
    ) -> None:
        self._call = call
        self._parser = parser
        self._decoder = decoder
        self._filter = usage_filter

    def __call__(self, chunk: bytes) -> bytes | list[bytes]:
        if chunk and self._call.first_byte_at is None:
            self._call.first_byte_at = time.time()
        if self._decoder is not None:
            try:
                decoded = self._decoder.decompress(chunk) if chunk else b""
                self._parser.feed(decoded)
                if self._call.body_keeper is not None and decoded:
                    self._call.body_keeper.add(decoded)  # bounded (bodies/material.py)
            except Exception:
                log.warning("usage parsing stopped for %s: undecodable stream", self._call.id)
                self._decoder = None
        if self._filter is None:
            return chunk
        try:
            if not chunk:
                return self._filter.flush()
            # Nothing to forward yet (a dropped usage chunk, half an event): an empty list, never
            # b"" — mitmproxy sends b"" as an empty HTTP/1 chunk, which ends the body.
            return self._filter.feed(chunk) or []
        except Exception:  # the filter promises not to raise; forward untouched if it ever does
            log.exception("usage filter failed for %s", self._call.id)
            self._filter = None
            return chunk
