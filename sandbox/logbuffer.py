"""One invocation's captured output, capped so a flooding handler cannot exhaust the caller."""

from __future__ import annotations


class LogBuffer:
    """Keeps the first and the last `cap // 2` bytes and counts what was dropped between."""

    def __init__(self, cap: int) -> None:
        self._half = max(cap // 2, 1)
        self._head = bytearray()
        self._tail = bytearray()
        self.dropped = 0

    def feed(self, data: bytes) -> None:
        room = self._half - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
            if not data:
                return
        self._tail += data
        excess = len(self._tail) - self._half
        if excess > 0:
            del self._tail[:excess]
            self.dropped += excess

    def text(self) -> str:
        head = self._head.decode("utf-8", "replace")
        if not self._tail:
            return head
        tail = self._tail.decode("utf-8", "replace")
        if not self.dropped:
            return head + tail
        note = f"\n[... {self.dropped} bytes of output dropped: over the sandbox's log cap ...]\n"
        return head + note + tail
