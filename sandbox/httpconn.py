"""One HTTP/1.1 connection of a Runtime API endpoint: parse requests, queue replies; no threads.

Only what a runtime client sends is understood: a request line, headers, and a body sized by
Content-Length or sent chunked. Keep-alive is the default, as HTTP/1.1 has it. A body past
`body_cap` is read and thrown away (only its size is kept), so an oversized response can be
answered as Lambda answers it instead of breaking the connection.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field

_REASONS = {200: "OK", 202: "Accepted", 400: "Bad Request", 403: "Forbidden", 404: "Not Found",
            413: "Request Entity Too Large", 500: "Internal Server Error"}
_MAX_HEAD = 64 * 1024


class BadRequest(Exception):
    """The peer sent something that is not HTTP/1.x: the connection is dropped."""


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""
    size: int = 0  # the body's full size, even when only `body_cap` of it was kept
    close: bool = False
    parts: list[bytes] = field(default_factory=list, repr=False)


class Connection:
    def __init__(self, sock: socket.socket, body_cap: int) -> None:
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.out = bytearray()  # reply bytes the socket would not take yet
        self.watching_out = False
        self.closing = False  # the peer asked for `Connection: close`
        self._buf = bytearray()
        self._cap = body_cap
        self._req: Request | None = None
        self._left = 0  # body bytes still due (Content-Length), or -1: chunked
        self._chunk_left = 0

    def fileno(self) -> int:
        return self.sock.fileno()

    def feed(self, data: bytes) -> list[Request]:
        """Take bytes read from the socket; return every request they complete."""
        self._buf += data
        done: list[Request] = []
        while True:
            req = self._step()
            if req is None:
                return done
            done.append(req)

    def reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> bool:
        """Queue and send a reply; False if the peer is gone."""
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}"]
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}")
        lines.append(f"Content-Length: {len(body)}\r\n\r\n")
        self.out += "\r\n".join(lines).encode("latin-1")
        self.out += body
        return self.flush()

    def flush(self) -> bool:
        try:
            while self.out:
                sent = self.sock.send(self.out)
                del self.out[:sent]
        except BlockingIOError:
            pass
        except OSError:
            return False
        return True

    def close(self) -> None:
        self.sock.close()

    # -- parsing ---------------------------------------------------------------------------

    def _step(self) -> Request | None:
        if self._req is None:
            end = self._buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buf) > _MAX_HEAD:
                    raise BadRequest("request head too large")
                return None
            self._req = self._head(bytes(self._buf[:end]).decode("latin-1"))
            del self._buf[: end + 4]
        req = self._req
        finished = self._chunked(req) if self._left < 0 else self._sized(req)
        if not finished:
            return None
        self._req = None
        req.body = b"".join(req.parts)
        req.parts.clear()
        return req

    def _head(self, head: str) -> Request:
        line, *rest = head.split("\r\n")
        parts = line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise BadRequest(f"not an HTTP/1.x request line: {line[:80]!r}")
        headers = {}
        for item in rest:
            name, sep, value = item.partition(":")
            if not sep:
                raise BadRequest(f"malformed header line: {item[:80]!r}")
            headers[name.strip().lower()] = value.strip()
        close = headers.get("connection", "").lower() == "close" or parts[2] == "HTTP/1.0"
        req = Request(parts[0], parts[1], headers, close=close)
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._left, self._chunk_left = -1, 0
        else:
            try:
                self._left = int(headers.get("content-length", "0"))
            except ValueError:
                raise BadRequest("bad Content-Length") from None
            if self._left < 0:
                raise BadRequest("bad Content-Length")
        return req

    def _keep(self, req: Request, data: bytes) -> None:
        room = self._cap - min(req.size, self._cap)
        if room > 0:
            req.parts.append(data[:room])
        req.size += len(data)

    def _sized(self, req: Request) -> bool:
        take = min(self._left, len(self._buf))
        if take:
            self._keep(req, bytes(self._buf[:take]))
            del self._buf[:take]
            self._left -= take
        return self._left == 0

    def _chunked(self, req: Request) -> bool:
        while True:
            if self._chunk_left > 0:
                take = min(self._chunk_left, len(self._buf))
                if not take:
                    return False
                self._keep(req, bytes(self._buf[:take]))
                del self._buf[:take]
                self._chunk_left -= take
                if self._chunk_left:
                    return False
                self._chunk_left = -2  # the CRLF after the chunk's data is due
            if self._chunk_left == -2:
                if len(self._buf) < 2:
                    return False
                del self._buf[:2]
                self._chunk_left = 0
            end = self._buf.find(b"\r\n")
            if end < 0:
                return False
            size_text = bytes(self._buf[:end]).split(b";")[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise BadRequest("bad chunk size") from None
            if size == 0:  # last chunk: skip any trailers up to the blank line
                tail = self._buf.find(b"\r\n\r\n", end)
                if tail < 0:
                    return False
                del self._buf[: tail + 4]
                return True
            del self._buf[: end + 2]
            self._chunk_left = size
