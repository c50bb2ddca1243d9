"""Content-Encoding decoding of the parser's copy, chunk by chunk."""

from __future__ import annotations

import gzip
import zlib

import brotli
import pytest
import zstandard

from halton_meter.decoding import chunk_decoder, decode_body

BODY = b'data: {"usage":{"input_tokens":12}}\n\n' * 200

ENCODED = {
    "gzip": gzip.compress(BODY),
    "deflate": zlib.compress(BODY),  # zlib-wrapped, as the RFC says
    "br": brotli.compress(BODY),
    "zstd": zstandard.ZstdCompressor().compress(BODY),
    "identity": BODY,
}


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize("encoding", sorted(ENCODED))
@pytest.mark.parametrize("size", [1, 7, 4096])
def test_chunked_decoding_restores_the_body(encoding: str, size: int) -> None:
    decoder = chunk_decoder(encoding)
    assert decoder is not None
    data = ENCODED[encoding]
    out = b"".join(decoder.decompress(data[i : i + size]) for i in range(0, len(data), size))
    assert out == BODY


def test_raw_deflate_as_some_servers_send_it() -> None:
    assert decode_body(raw_deflate(BODY), "deflate") == BODY


def test_unknown_or_broken_encodings_are_refused_not_raised() -> None:
    assert chunk_decoder("compress") is None
    assert decode_body(b"not gzip at all", "gzip") is None
