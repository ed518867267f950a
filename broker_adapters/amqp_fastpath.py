"""Every use of pika's private internals: Warren's measured AMQP fast paths, checked and reported.

pika's public API costs a sync round trip and a queue source most of their CPU (docs/fleet.md,
docs/sources.md), so five paths reach under it:

- coalesced-writes: a message's frames leave in one send() on the caller's thread;
- large-reads: the socket is read 64 KB at a time instead of 4 KB;
- confirm-pipeline: many confirmed publishes, one wait for their acks;
- delivery-frames: a consumer channel's deliveries are decoded straight off the frame buffer;
- batched-settles: the acks of one commit are written in one frame batch.

No other module names a pika private attribute (a grep test holds that). `install(conn,
enabled=...)` applies the paths to one BlockingConnection: only on a pika release inside
TESTED_PIKA, only when enabled (WARREN_AMQP_FASTPATH, read into AmqpSettings at the edge), and
each only when the hooks it needs are there. What is active is logged once per process; a path
that cannot be installed is logged as a warning and named in the returned report, never skipped
silently. With a path off, the same work goes through pika's public API, with the same results.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection
from pika.frame import Method
from pika.spec import Basic

from broker_adapters.amqp_frames import ack_frame, request_frames
from broker_adapters.amqp_public import (
    BlockingConfirms,
    Confirms,
    settle_blocking,
    settle_method,
)

log = logging.getLogger("warren.amqp")

TESTED_PIKA = ((1, 3), (2, 0))  # >=1.3,<2, as setup.cfg pins it
COALESCED_WRITES = "coalesced-writes"
LARGE_READS = "large-reads"
CONFIRM_PIPELINE = "confirm-pipeline"
DELIVERY_FRAMES = "delivery-frames"
BATCHED_SETTLES = "batched-settles"
ALL_PATHS = (COALESCED_WRITES, LARGE_READS, CONFIRM_PIPELINE, DELIVERY_FRAMES, BATCHED_SETTLES)
# The fleet's Backbone: its consumers are the workers' slots (delivery-frames since the sync lane).
PUBLISHER_PATHS = (COALESCED_WRITES, LARGE_READS, CONFIRM_PIPELINE, DELIVERY_FRAMES)
CONSUMER_PATHS = (DELIVERY_FRAMES, BATCHED_SETTLES)  # a mapping's queue source
RECV_BYTES = 64 * 1024

# Every hook a path relies on: (owner, attribute). Checked before a path is installed.
_HOOKS = {
    COALESCED_WRITES: (("impl", "_output_marshaled_frames"), ("impl", "_transport"),
                       ("impl", "bytes_sent"), ("impl", "frames_sent"),
                       ("impl", "_body_max_length")),
    LARGE_READS: (("transport", "_MAX_RECV_BYTES"),),
    CONFIRM_PIPELINE: (("conn", "_flush_output"),),
    DELIVERY_FRAMES: (("impl", "_on_data_available"), ("impl", "_frame_buffer"),
                      ("impl", "bytes_received"), ("impl", "frames_received")),
    BATCHED_SETTLES: (("impl", "_output_marshaled_frames"),),
}


@dataclass(frozen=True)
class FastPathReport:
    """Which fast paths one connection got, and why any it wanted did not install."""

    pika_version: str
    enabled: bool
    active: tuple[str, ...]
    unavailable: tuple[tuple[str, str], ...] = ()  # (path, why)

    def describe(self) -> str:
        if not self.enabled:
            return f"pika {self.pika_version}: AMQP fast paths off (WARREN_AMQP_FASTPATH=0)"
        line = f"pika {self.pika_version}: AMQP fast paths active: {', '.join(self.active) or '-'}"
        for path, why in self.unavailable:
            line += f"; {path} NOT installed: {why}"
        return line


class FrameParser(Protocol):
    """What `FastPaths.decode_deliveries` feeds (broker_adapters/rmq_frames.py's DeliveryFrames)."""

    taken: int

    def take(self, buf: bytes, pos: int) -> tuple[int, int]: ...


_announced: set[FastPathReport] = set()
_announce_lock = threading.Lock()


def _announce(report: FastPathReport) -> None:
    """Log a report once per process (every connection of a fleet process gets the same)."""
    with _announce_lock:
        if report in _announced:
            return
        _announced.add(report)
    (log.warning if report.unavailable else log.info)("%s", report.describe())


def supported(version: str) -> bool:
    try:
        major_minor = tuple(int(part) for part in version.split(".")[:2])
    except ValueError:
        return False
    low, high = TESTED_PIKA
    return low <= major_minor < high


def install(
    conn: BlockingConnection, *, enabled: bool, paths: Sequence[str] = ALL_PATHS,
    version: str = pika.__version__,
) -> FastPaths:
    """Install `paths` on `conn`; the returned FastPaths says what is active and serves them."""
    active: list[str] = []
    unavailable: list[tuple[str, str]] = []
    impl: Any = getattr(conn, "_impl", None)
    if enabled and not supported(version):
        low, high = TESTED_PIKA
        why = (f"pika {version} is outside the tested range >={'.'.join(map(str, low))},"
               f"<{'.'.join(map(str, high))}")
        unavailable = [(path, why) for path in paths]
    elif enabled:
        owners = {"conn": conn, "impl": impl, "transport": getattr(impl, "_transport", None)}
        for path in paths:
            missing = [f"{owner}.{name}" for owner, name in _HOOKS[path]
                       if owners[owner] is None or not hasattr(owners[owner], name)]
            if missing:
                unavailable.append((path, f"pika {version} has no {', '.join(missing)}"))
            else:
                active.append(path)
    report = FastPathReport(version, enabled, tuple(active), tuple(unavailable))
    fast = FastPaths(conn, report)
    if COALESCED_WRITES in active:
        _coalesce_writes(impl)
    if LARGE_READS in active:
        # pika re-parses its frame buffer after every read: a 47 KB message (a batch of 100
        # records) cost 113 us of CPU with 4 KB reads and 82 us with 64 KB ones (still below
        # the allocator's mmap threshold).
        impl._transport._MAX_RECV_BYTES = RECV_BYTES
    _announce(report)
    return fast


def install_on_asyncio(
    conn: Any, *, enabled: bool, version: str = pika.__version__
) -> FastPathReport:
    """coalesced-writes on an `AsyncioConnection` (the gateway's), which is its own impl: a sync
    request's frames leave in one send() instead of on the event loop's next write turn."""
    active: tuple[str, ...] = ()
    unavailable: tuple[tuple[str, str], ...] = ()
    if enabled and not supported(version):
        unavailable = ((COALESCED_WRITES, f"pika {version} is outside the tested range"),)
    elif enabled:
        missing = [name for _, name in _HOOKS[COALESCED_WRITES] if not hasattr(conn, name)]
        if missing:
            unavailable = ((COALESCED_WRITES, f"pika {version} has no {', '.join(missing)}"),)
        else:
            _coalesce_writes(conn)
            active = (COALESCED_WRITES,)
    report = FastPathReport(version, enabled, active, unavailable)
    _announce(report)
    return report


class FastPaths:
    """The paths installed on one connection, and the public-API way for each that is not."""

    def __init__(self, conn: BlockingConnection, report: FastPathReport) -> None:
        self._conn = conn
        self.report = report

    def active(self, path: str) -> bool:
        return path in self.report.active

    def confirms(self) -> Confirms:
        """A publisher on a new confirm-mode channel of this connection."""
        if self.active(CONFIRM_PIPELINE):
            return _ConfirmPipeline(self._conn)
        return BlockingConfirms(self._conn.channel())

    def send_request(
        self, channel: int, queue: str, body: bytes, reply_to: str, correlation_id: str,
        expiration: str,
    ) -> bool:
        """Write a sync request's frames straight to the socket (coalesced-writes); False
        when that path is off (publish through pika then). Whatever the socket did not take
        is flushed before returning, so nothing waits for an ioloop turn."""
        if not self.active(COALESCED_WRITES):
            return False
        impl: Any = self._conn._impl
        if not impl.is_open:
            return False  # pika's own path raises the right error
        frames = request_frames(channel, queue, body, reply_to, correlation_id, expiration,
                                impl._body_max_length)
        impl._output_marshaled_frames([frames])
        if impl._transport.get_write_buffer_size():
            self._conn.process_data_events(0)
        return True

    def send_ack(self, channel: int, tag: int, multiple: bool = False) -> bool:
        """Ack straight to the socket (coalesced-writes), without BlockingChannel's flush and
        poll; False when that path is off (ack through pika then)."""
        if not self.active(COALESCED_WRITES):
            return False
        impl: Any = self._conn._impl
        if not impl.is_open:
            return False
        impl._output_marshaled_frames([ack_frame(channel, tag, multiple)])
        if impl._transport.get_write_buffer_size():
            self._conn.process_data_events(0)
        return True

    def decode_deliveries(self, parser: FrameParser) -> bool:
        """Feed every read to `parser` first; what it leaves goes to pika, in order. Call it
        before consuming. False when the path is off: deliveries come through pika's callback."""
        if not self.active(DELIVERY_FRAMES):
            return False
        impl: Any = self._conn._impl
        pika_reads = impl._on_data_available  # pika's own handler, for every other frame

        def on_data(data: bytes) -> None:
            buf = impl._frame_buffer + data if impl._frame_buffer else data
            impl._frame_buffer = b""
            pos = 0
            try:
                while True:
                    upto, foreign = parser.take(buf, pos)
                    # pika's heartbeat checker watches these counters: keep them counting.
                    impl.bytes_received += upto - pos
                    impl.frames_received += parser.taken
                    pos = upto
                    if foreign < 0:
                        break
                    start, pos = pos, foreign
                    pika_reads(buf[start:foreign])  # pika counts this frame itself
            finally:
                if pos < len(buf):
                    impl._frame_buffer = buf[pos:]

        impl._on_data_available = on_data
        return True

    def settle(self, channel: BlockingChannel, settlements: list[tuple[int, bool]],
               ack: bool) -> None:
        """Ack (or nack with requeue) `(delivery tag, multiple)` pairs on `channel`.

        BlockingChannel flushes and polls after every call, and pika sends every frame with its
        own send(): batches that finish out of order leave ~100 single acks per commit. All but
        the last are marshalled into one write; the last goes through BlockingChannel, whose
        flush writes them all, so this returns once every frame is written, as one call each did.
        """
        if not settlements:
            return
        *head, (tag, many) = settlements
        if head and self.active(BATCHED_SETTLES):
            number = channel.channel_number
            output = self._conn._impl._output_marshaled_frames  # type: ignore[attr-defined]
            output([b"".join(Method(number, settle_method(ack, t, m)).marshal() for t, m in head)])
        else:
            for t, m in head:
                settle_blocking(channel, ack, t, m)
        settle_blocking(channel, ack, tag, many)


def _coalesce_writes(impl: Any) -> None:
    """Send a message's frames with one send() on the caller's thread when nothing is queued.

    pika hands each frame to its transport separately, and the transport only buffers: the
    bytes leave once the ioloop has armed a write watcher, polled and found the socket
    writable (two epoll_ctl and an epoll_wait per message). On a loaded 2-core box those
    wake-ups were a visible part of a sync round trip. So a message's frames are joined, and
    when the transport's buffer is empty the joined bytes go straight to the non-blocking
    socket; whatever does not fit (EAGAIN, partial send) takes pika's own buffered path, so
    ordering is kept. The direct send is for a plain TCP transport only (TLS: joined, buffered).
    """
    output: Callable[[Sequence[bytes]], None] = impl._output_marshaled_frames

    def coalesced(frames: Sequence[bytes]) -> None:
        data = b"".join(frames) if len(frames) > 1 else frames[0]
        sent = _send_now(impl._transport, data)
        if sent:
            impl.bytes_sent += sent  # pika's heartbeat checker watches this counter
            impl.frames_sent += len(frames)
            data = data[sent:]
        if data:
            output([data])

    impl._output_marshaled_frames = coalesced


def _send_now(transport: Any, data: bytes) -> int:
    """Bytes of `data` written straight to the transport's socket (0: use pika's path)."""
    if type(transport).__name__ != "_AsyncPlaintextTransport":
        return 0
    if getattr(transport, "_state", None) != getattr(transport, "_STATE_ACTIVE", object()):
        return 0
    sock = getattr(transport, "_sock", None)
    if sock is None or transport.get_write_buffer_size() != 0:
        return 0
    try:
        return int(sock.send(data))
    except OSError:  # EAGAIN, or a broken socket that pika's own path will report
        return 0


def socket_fileno(conn: BlockingConnection) -> int | None:
    """The connection's socket descriptor, for a watcher that wakes when the broker sends
    something (workers/keeper.py); None where pika's transport does not show it."""
    transport = getattr(getattr(conn, "_impl", None), "_transport", None)
    sock = getattr(transport, "_sock", None)
    try:
        return int(sock.fileno()) if sock is not None else None
    except OSError:
        return None


def end_wait(conn: BlockingConnection, channel_number: int) -> None:
    """Make a running `process_data_events` return after this read, as it does when pika
    dispatched a delivery itself: one decoded by delivery-frames never reaches pika."""
    pending = getattr(conn, "_channels_pending_dispatch", None)
    if pending is not None:
        pending.add(channel_number)


def undispatched(conn: BlockingConnection) -> bool:
    """Whether pika holds events it read but has not dispatched (a delivery read while a
    publish or an ack flushed): a socket watcher would not wake for them."""
    return bool(getattr(conn, "_channels_pending_dispatch", None))


class _ConfirmPipeline:
    """A channel in confirm mode driven at pika's channel level: publish many, await acks once.

    pika's BlockingChannel waits for each confirm in turn; its underlying channel object
    takes an ack/nack callback instead, which lets confirms (multiple=True) be awaited for a
    whole batch. Delivery tags count publishes on this channel from 1.
    """

    def __init__(self, conn: BlockingConnection) -> None:
        self._conn = conn
        self._channel = conn.channel()
        self._impl: Any = self._channel._impl  # the async channel under the blocking wrapper
        self._published = 0
        self._confirmed = 0
        self._failed: str | None = None
        ready: list[bool] = []
        self._impl.add_on_return_callback(self._on_return)
        self._impl.confirm_delivery(self._on_confirm, lambda _frame: ready.append(True))
        while not ready:
            conn.process_data_events(time_limit=0.1)

    @property
    def is_open(self) -> bool:
        return bool(self._channel.is_open)

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        if isinstance(method, Basic.Nack):
            self._failed = "RabbitMQ refused (nacked) a message"
        # Acks come in order; `multiple` covers every tag up to this one.
        self._confirmed = max(self._confirmed, int(method.delivery_tag))

    def _on_return(self, _channel: Any, method: Any, _props: Any, _body: bytes) -> None:
        self._failed = f"RabbitMQ returned a message: {method.reply_text} ({method.routing_key})"

    def publish(self, queue: str, bodies: Sequence[bytes], props: pika.BasicProperties) -> None:
        self._failed = None
        for body in bodies:
            self._impl.basic_publish("", queue, body, props, mandatory=True)
            self._published += 1
        target = self._published

        def settled() -> bool:
            # Every confirm of this batch, even after a failure: RabbitMQ sends a message's
            # return before its ack, so once the last ack is in, no late return or nack of
            # this batch is left to fail the next one.
            return self._confirmed >= target

        # BlockingConnection._flush_output(waiter) runs I/O until the waiter is true: the same
        # wait BlockingChannel uses for its own confirms, without per-message round trips.
        flush: Any = self._conn._flush_output  # type: ignore[attr-defined]
        while not settled():
            flush(settled)
            if not self._conn.is_open or not self._channel.is_open:
                # A channel the broker closed confirms nothing more: fail now, don't spin.
                raise pika.exceptions.AMQPConnectionError("channel closed awaiting confirms")
        if self._failed is not None:
            raise pika.exceptions.AMQPError(self._failed)
