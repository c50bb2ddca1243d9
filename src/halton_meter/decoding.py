"""Content-Encoding decoders for the parser's copy of a body (the client gets the raw bytes)."""

from __future__ import annotations

import zlib
from typing import Protocol

import brotli
import zstandard


class ChunkDecoder(Protocol):
    def decompress(self, data: bytes) -> bytes: ...


class _Identity:
    def decompress(self, data: bytes) -> bytes:
        return data


class _Deflate:
    """`deflate` is zlib-wrapped by the RFC but raw in some servers: detect on the first bytes."""

    def __init__(self) -> None:
        self._inner: zlib._Decompress | None = None

    def decompress(self, data: bytes) -> bytes:
        if self._inner is None:
            if not data:
                return b""
            raw = (data[0] & 0x0F) != 8
            self._inner = zlib.decompressobj(-zlib.MAX_WBITS if raw else zlib.MAX_WBITS)
        return self._inner.decompress(data)


class _Brotli:
    def __init__(self) -> None:
        self._inner = brotli.Decompressor()

    def decompress(self, data: bytes) -> bytes:
        return bytes(self._inner.process(data)) if data else b""


def chunk_decoder(content_encoding: str | None) -> ChunkDecoder | None:
    """An incremental decoder, or None for an encoding we cannot read (the parse is skipped)."""
    encoding = (content_encoding or "identity").strip().lower()
    if encoding in ("", "identity"):
        return _Identity()
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding == "deflate":
        return _Deflate()
    if encoding == "br":
        return _Brotli()
    if encoding == "zstd":
        return zstandard.ZstdDecompressor().decompressobj()
    return None


def decode_body(body: bytes, content_encoding: str | None) -> bytes | None:
    """Decode a whole body; None when it cannot be decoded."""
    decoder = chunk_decoder(content_encoding)
    if decoder is None:
        return None
    try:
        return decoder.decompress(body)
    except Exception:
        return None
