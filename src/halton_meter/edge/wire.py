"""Just enough HTTP/1.1 for a proxy that never looks inside a body.

The edge reads a request head to learn where a connection goes, and for plain-HTTP
passthrough it follows message framing (Content-Length, chunked, until close) so that each
request on a keep-alive connection can lose its Proxy-Authorization and go to its own host.
Bodies are copied in large reads, never parsed.
"""

from __future__ import annotations

import asyncio
import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from halton_meter.runstate import CLIENT_HEADER

HEAD_LIMIT = 64 * 1024  # a request or response head larger than this is refused
CHUNK = 256 * 1024  # one read; asyncio's socket transports read at most this much at once

# Headers meant for the proxy that a client talks to; never forwarded to an origin server.
PROXY_HEADERS = frozenset({"proxy-authorization", "proxy-connection"})
_CLIENT_HEADER_LOWER = CLIENT_HEADER.lower()


class WireError(Exception):
    """A message the edge cannot frame or route; `status` is what the client is told."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(slots=True)
class RequestHead:
    """One request head as received, with the target it names."""

    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    raw: bytes
    host: str = ""  # lowercase, without brackets or a trailing dot
    port: int = 0
    path: str = ""  # origin-form path and query, for a plain-HTTP request

    def header(self, name: str) -> str | None:
        """The first value of a header (name in lowercase), or None."""
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    @property
    def is_connect(self) -> bool:
        return self.method == "CONNECT"

    @property
    def origin_form(self) -> bool:
        """A request addressed to the edge itself (`GET /status`), not through it."""
        return self.target.startswith("/")

    @property
    def authority(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def for_daemon(self, client: str) -> bytes:
        """The head unchanged plus `X-Halton-Client`, so the daemon can attribute the
        connection to the client rather than to the edge. A value the client sent itself is
        dropped: only the edge may say who the client is."""
        raw = self.raw
        if self.header(_CLIENT_HEADER_LOWER) is not None:
            line = raw.split(b"\r\n", 1)[0].decode("latin-1")
            raw = _rebuild(line, self.headers, drop=frozenset({_CLIENT_HEADER_LOWER}))
        return raw[:-2] + f"{CLIENT_HEADER}: {client}\r\n\r\n".encode("latin-1")

    def for_origin(self) -> bytes:
        """The head for the origin server: origin-form target, no proxy headers."""
        extra = () if self.header("host") is not None else (("Host", self._host_header()),)
        return _rebuild(f"{self.method} {self.path} {self.version}", self.headers, extra=extra)

    def for_proxy(self, authorization: str | None) -> bytes:
        """The head for a corporate proxy: absolute-form kept, its own credentials only."""
        extra = (("Proxy-Authorization", authorization),) if authorization else ()
        return _rebuild(f"{self.method} {self.target} {self.version}", self.headers, extra=extra)

    def _host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == 80 else f"{host}:{self.port}"

    def keep_alive(self) -> bool:
        return _persistent(self.version, self.header("connection"))

    def body_length(self) -> int | None:
        """Bytes of body that follow, or None for a chunked body."""
        return _framing(self.header("transfer-encoding"), self.header("content-length"), 0)


_TO_ORIGIN_DROPPED = PROXY_HEADERS | {_CLIENT_HEADER_LOWER}


def _rebuild(
    line: str,
    headers: list[tuple[str, str]],
    *,
    drop: frozenset[str] = _TO_ORIGIN_DROPPED,
    extra: tuple[tuple[str, str], ...] = (),
) -> bytes:
    parts = [line]
    parts += [f"{key}: {value}" for key, value in headers if key.lower() not in drop]
    parts += [f"{key}: {value}" for key, value in extra]
    return ("\r\n".join(parts) + "\r\n\r\n").encode("latin-1")


def _persistent(version: str, connection: str | None) -> bool:
    tokens = {token.strip().lower() for token in (connection or "").split(",")}
    if version == "HTTP/1.0":
        return "keep-alive" in tokens
    return "close" not in tokens


def _framing(transfer_encoding: str | None, content_length: str | None, default: int) -> int | None:
    if transfer_encoding is not None:
        if transfer_encoding.rsplit(",", 1)[-1].strip().lower() != "chunked":
            raise WireError(501, f"unsupported Transfer-Encoding {transfer_encoding!r}")
        return None
    if content_length is None:
        return default
    length = content_length.split(",")[0].strip()
    if not _is_number(length, 18):
        raise WireError(400, f"bad Content-Length {content_length!r}")
    return int(length)


def _split_head(raw: bytes) -> tuple[str, list[tuple[str, str]]]:
    lines = raw[:-4].decode("latin-1").split("\r\n")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip() or line[0] in " \t":
            raise WireError(400, "malformed header line")
        headers.append((name, value.strip()))
    return lines[0], headers


def parse_request(raw: bytes) -> RequestHead:
    """Parse a request head ending in CRLF CRLF, and the target it names."""
    line, headers = _split_head(raw)
    parts = line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise WireError(400, "malformed request line")
    method, target, version = parts
    head = RequestHead(method, target, version, headers, raw)
    if method == "CONNECT":
        head.host, head.port = _authority(target, 443)
    elif target.startswith("/"):
        head.path = target
    else:
        try:
            url = urlsplit(target)
            port = url.port
        except ValueError:
            raise WireError(400, f"bad request target {_shown(target)}") from None
        if url.scheme.lower() != "http":
            raise WireError(501, f"the edge forwards http:// URLs only, not {url.scheme}://")
        if not url.hostname:
            raise WireError(400, f"no host in {_shown(target)}")
        head.host, head.port = _clean_host(url.hostname), port or 80
        if not _valid_host(head.host):
            raise WireError(400, f"bad host in {_shown(target)}")
        head.path = (url.path or "/") + (f"?{url.query}" if url.query else "")
    return head


def _clean_host(host: str) -> str:
    return host.strip("[]").rstrip(".").lower()


def _authority(text: str, default_port: int) -> tuple[str, int]:
    host, port = text, default_port
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise WireError(400, f"bad authority {_shown(text)}")
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":") or not _is_number(rest[1:], 5):
                raise WireError(400, f"bad authority {_shown(text)}")
            port = int(rest[1:])
    elif ":" in text:
        host, _, number = text.rpartition(":")
        if not _is_number(number, 5):
            raise WireError(400, f"bad authority {_shown(text)}")
        port = int(number)
    host = _clean_host(host)
    if not 0 < port < 65536 or not _valid_host(host):
        raise WireError(400, f"bad authority {_shown(text)}")
    return host, port


MAX_HOST = 253  # DNS: 253 characters in a name, 63 in a label
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_.")
_IPV6_CHARS = _NAME_CHARS | {":", "%"}


def _is_number(text: str, digits: int) -> bool:
    """ASCII digits only, and few of them: `str.isdigit` also accepts "²" (which `int`
    refuses) and `int` refuses more than 4,300 digits, both ValueErrors out of a parser."""
    return 0 < len(text) <= digits and text.isascii() and text.isdigit()


def _valid_host(host: str) -> bool:
    """A name the resolver can take, or an IP literal. Anything else would fail later, inside
    getaddrinfo, with an error that is not an OSError (a NUL: ValueError; a label over 63
    characters or an empty one: UnicodeError from the idna codec); so it is refused here, with
    a 400, before any connection is tried. Names arrive in their ASCII (punycode) form."""
    if ":" in host:  # only an IPv6 literal has colons (zone ids included)
        if not _IPV6_CHARS.issuperset(host):
            return False
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
        return True
    if not host or len(host) > MAX_HOST or not _NAME_CHARS.issuperset(host):
        return False
    return all(0 < len(label) <= 63 for label in host.split("."))


def _shown(text: str) -> str:
    """A target for an error message: bounded, since the client chose its length."""
    return repr(text if len(text) <= 100 else text[:100] + "...")


@dataclass(slots=True)
class ResponseHead:
    status: int
    version: str
    headers: list[tuple[str, str]]
    raw: bytes

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def body_length(self, request_method: str) -> int | None:
        """Bytes of body that follow; None for chunked; -1 for "until the server closes"."""
        if request_method == "HEAD" or self.status in (204, 304) or 100 <= self.status < 200:
            return 0
        return _framing(self.header("transfer-encoding"), self.header("content-length"), -1)

    def keep_alive(self) -> bool:
        return _persistent(self.version, self.header("connection"))


def parse_response(raw: bytes) -> ResponseHead:
    line, headers = _split_head(raw)
    parts = line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not _is_number(parts[1], 3):
        raise WireError(502, "malformed response from upstream")
    return ResponseHead(int(parts[1]), parts[0], headers, raw)


async def read_head(reader: asyncio.StreamReader) -> bytes | None:
    """A head up to and including CRLF CRLF; None at a clean end of stream."""
    try:
        return await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as error:
        if not error.partial.strip():
            return None
        raise WireError(400, "connection closed inside a message head") from None
    except asyncio.LimitOverrunError:
        raise WireError(431, "message head too large") from None


def reply(status: int, reason: str, text: str, *, close: bool = True) -> bytes:
    """A short plain-text answer from the edge itself."""
    body = (text.rstrip("\n") + "\n").encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\n" + ("Connection: close\r\n" if close else "") + "\r\n"
    )
    return head.encode("latin-1") + body


REASONS = {
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    431: "Request Header Fields Too Large",
    501: "Not Implemented",
    502: "Bad Gateway",
    504: "Gateway Timeout",
}


async def copy_exact(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, size: int) -> None:
    while size > 0:
        data = await reader.read(min(size, CHUNK))
        if not data:
            raise asyncio.IncompleteReadError(b"", size)
        size -= len(data)
        writer.write(data)
        await writer.drain()


async def copy_chunked(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy a chunked body through its last chunk and trailers, as received."""
    while True:
        line = await reader.readuntil(b"\r\n")
        writer.write(line)
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError:
            raise WireError(502, "malformed chunk size") from None
        if size == 0:
            while (trailer := await reader.readuntil(b"\r\n")) != b"\r\n":
                writer.write(trailer)
            writer.write(b"\r\n")
            await writer.drain()
            return
        await copy_exact(reader, writer, size + 2)


async def copy_until_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await reader.read(CHUNK):
        writer.write(data)
        await writer.drain()


async def copy_body(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, length: int | None
) -> None:
    """Copy one body framed by `length` (see `body_length`)."""
    if length is None:
        await copy_chunked(reader, writer)
    elif length > 0:
        await copy_exact(reader, writer, length)
    elif length < 0:
        await copy_until_eof(reader, writer)
