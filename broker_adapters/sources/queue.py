"""RabbitMQ queue source: manual acks after hand-off, records in Lambda's `aws:rmq` shape."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
import pika
import pika.exceptions
from pika.adapters.blocking_connection import BlockingChannel, BlockingConnection
from pika.spec import Basic, BasicProperties

from broker_adapters.amqp_fastpath import CONSUMER_PATHS, FastPaths, install
from broker_adapters.rmq_frames import DeliveryFrames
from broker_adapters.sources.queue_location import QueueLocation
from broker_adapters.sources.rmq_message import rmq_message
from warren.errors import BrokerUnavailable, NotFound
from warren.source import SourceIdentity, SourceRecord, records_json

_PIKA_ERRORS = (pika.exceptions.AMQPError, OSError)
_MAX_PREFETCH = 65535
log = logging.getLogger("warren.sources")


class _Cancelled(pika.exceptions.AMQPError):  # type: ignore[misc]
    """The broker cancelled our consumer (the queue was deleted): reconnect and look again."""


@dataclass
class _Delivery:
    generation: int
    tag: int
    redelivered: bool
    properties: BasicProperties
    body: bytes


class QueueSource:
    """Consumes one RabbitMQ queue with manual acks; never ordered (RabbitMQ requeues freely).

    One IO thread owns the pika connection (pika connections are not thread-safe): it keeps
    heartbeats going while a batch is with its handler, fills a local buffer up to the prefetch
    window, and runs acks and nacks handed to it through `add_callback_threadsafe`. When the
    connection drops, everything delivered on it (buffered or in flight) is forgotten: the
    broker requeues it, and the thread reconnects with a backoff.
    """

    kind = "queue"
    ordered = False

    def __init__(
        self,
        location: QueueLocation,
        identity: SourceIdentity,
        *,
        prefetch: int = 1000,
        heartbeat_s: int = 30,
        connect_timeout_s: float = 30.0,
        fastpath: bool = True,
    ) -> None:
        self._location = location
        self._fastpath = fastpath
        self._params = location.parameters(heartbeat_s)
        self._prefetch = max(1, min(prefetch, _MAX_PREFETCH))
        self._queue_key = f"{location.queue}::{location.vhost}"
        self._arn = (
            f"arn:aws:mq:{identity.region}:{identity.account}:broker:"
            f"{location.host}:{location.vhost}"
        )
        self._cond = threading.Condition()
        self._buffer: deque[_Delivery] = deque()
        # record id -> (generation, tag, the record): a redelivery takes over the id of its
        # stale copy (read on a dead connection), which then settles nothing of it.
        self._inflight: dict[str, tuple[int, int, SourceRecord]] = {}
        self._generation = 0
        self._connection: BlockingConnection | None = None
        self._error = "not connected yet"
        self._fatal: Exception | None = None
        self._failures = 0  # connection attempts that failed so far
        self._closing = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"warren-source-{identity.mapping_id}", daemon=True
        )
        self._thread.start()
        with self._cond:
            # Fail fast when the first attempt fails; the timeout only bounds a hung handshake.
            self._cond.wait_for(
                lambda: self._connection is not None or self._fatal is not None
                or self._failures > 0,
                timeout=connect_timeout_s,
            )
            connected, fatal, error = self._connection is not None, self._fatal, self._error
        if not connected:
            self.close()
            if fatal is not None:
                raise fatal
            raise BrokerUnavailable(f"queue {self._queue_key!r}: {error}")

    # -- the seam -------------------------------------------------------------------------

    def read(self, max_records: int, wait_s: float) -> list[SourceRecord]:
        deadline = time.monotonic() + max(0.0, wait_s)
        with self._cond:
            while not self._buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._fatal is not None:
                    break
                self._cond.wait(remaining)
            if self._fatal is not None:
                raise self._fatal
            if not self._buffer and self._connection is None:
                raise BrokerUnavailable(f"queue {self._queue_key!r}: {self._error}")
            take = [self._buffer.popleft() for _ in range(min(max_records, len(self._buffer)))]
            generation = self._generation
        out = []
        for delivery in take:
            if delivery.generation != generation:
                continue  # its connection died: the broker delivers it again on the new one
            record = self._record(delivery)
            self._inflight[record.id] = (delivery.generation, delivery.tag, record)
            out.append(record)
        return out

    def event(self, records: Sequence[SourceRecord]) -> dict[str, Any]:
        return {
            "eventSource": "aws:rmq",
            "eventSourceArn": self._arn,
            "rmqMessagesByQueue": {self._queue_key: [r.record for r in records]},
        }

    def encoded_event(self, records: Sequence[SourceRecord]) -> dict[str, Any]:
        """`event(records)` with each message already JSON (`orjson.Fragment`): its size was
        measured by serialising it when it was read, so it is not serialised twice."""
        event = self.event(())
        event["rmqMessagesByQueue"] = {self._queue_key: orjson.Fragment(records_json(records))}
        return event

    def commit(self, records: Sequence[SourceRecord]) -> None:
        """Ack these messages; BrokerUnavailable if some were lost with their connection."""
        lost = self._settle(records, ack=True)
        if lost:
            raise BrokerUnavailable(
                f"queue {self._queue_key!r}: the connection these {lost} message(s) came on "
                "was lost before they were acked; RabbitMQ will deliver them again"
            )

    def live(self, records: Sequence[SourceRecord]) -> list[SourceRecord]:
        """`records` without those read on a connection that has died since: those are
        forgotten (the broker requeued them and delivers them again), so a caller neither
        invokes them a second time nor tries to ack them on the new connection."""
        with self._cond:
            generation, connected = self._generation, self._connection is not None
        out = []
        for record in records:
            held = self._inflight.get(record.id)
            if held is None or held[2] is not record:
                continue  # settled already, or its id taken over by its redelivery
            if held[0] == generation and connected:
                out.append(record)
            else:
                del self._inflight[record.id]
        return out

    def retry(self, records: Sequence[SourceRecord]) -> None:
        # Messages of a lost connection are back in the queue already: nothing to do for them.
        self._settle(records, ack=False)

    def lag_s(self) -> float | None:
        with self._cond:
            if not self._buffer:
                return 0.0
            stamp = self._buffer[0].properties.timestamp
        return max(0.0, time.time() - stamp) if stamp else None

    def close(self) -> None:
        self._closing.set()
        connection = self._connection
        if connection is not None:
            try:
                connection.add_callback_threadsafe(lambda: None)  # wake the IO thread up
            except _PIKA_ERRORS:
                pass
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=10)

    # -- settling (acks and nacks) in the IO thread ---------------------------------------

    def _settle(self, records: Sequence[SourceRecord], *, ack: bool) -> int:
        with self._cond:
            generation, connection = self._generation, self._connection
        tags: list[int] = []
        lost = 0
        for record in records:
            held = self._inflight.get(record.id)
            if held is None or held[2] is not record:
                lost += held is not None  # a stale copy: its redelivery holds the id now
                continue
            del self._inflight[record.id]
            if held[0] == generation and connection is not None:
                tags.append(held[1])
            else:
                lost += 1
        if not tags:
            return lost
        done = threading.Event()
        failure: list[BaseException] = []

        def settle() -> None:
            try:
                if self._generation == generation and self._channel is not None:
                    self._send_settlements(self._channel, tags, ack)
                else:
                    failure.append(BrokerUnavailable("connection lost"))
            except BaseException as exc:  # reported to the waiting caller, not swallowed
                failure.append(exc)
            finally:
                done.set()

        try:
            assert connection is not None
            connection.add_callback_threadsafe(settle)
        except _PIKA_ERRORS:
            return lost + len(tags)
        while not done.wait(0.5):
            with self._cond:
                if self._generation != generation or self._connection is None:
                    return lost + len(tags)
        return lost + (len(tags) if failure else 0)

    def _send_settlements(
        self,
        channel: BlockingChannel,
        tags: list[int],
        ack: bool,
    ) -> None:
        # One frame with multiple=True settles the longest run of oldest outstanding tags;
        # the rest go one frame each (no round trip: acks have no reply in AMQP 0-9-1).
        wanted = set(tags)
        upto = None
        for tag in self._outstanding:
            if tag not in wanted:
                break
            upto = tag
        frames: list[tuple[int, bool]] = []
        if upto is not None:
            frames.append((upto, True))
            while self._outstanding and next(iter(self._outstanding)) <= upto:
                wanted.discard(self._outstanding.popitem(last=False)[0])
        for tag in sorted(wanted):
            frames.append((tag, False))
            self._outstanding.pop(tag, None)
        self._fast.settle(channel, frames, ack)

    # -- the IO thread ---------------------------------------------------------------------

    _channel: BlockingChannel | None = None
    _outstanding: OrderedDict[int, None]
    _fast: FastPaths  # of the current connection

    def _run(self) -> None:
        backoff = 0.2
        while not self._closing.is_set():
            connection = None
            try:
                connection = pika.BlockingConnection(self._params)
                self._fast = install(connection, enabled=self._fastpath, paths=CONSUMER_PATHS)
                channel = connection.channel()
                channel.queue_declare(self._location.queue, passive=True)
                channel.basic_qos(prefetch_count=self._prefetch)
                self._outstanding = OrderedDict()
                self._channel = channel
                with self._cond:
                    self._generation += 1
                channel.add_on_cancel_callback(self._on_cancel)
                # Deliveries may skip pika's layers (rmq_frames.py) and then may come while
                # basic_consume waits: the source is connected (acks can go) before it.
                self._fast.decode_deliveries(
                    DeliveryFrames(channel.channel_number, self._on_delivery)
                )
                with self._cond:
                    self._connection = connection
                    self._cond.notify_all()
                channel.basic_consume(self._location.queue, self._on_message)
                backoff = 0.2
                while not self._closing.is_set():
                    connection.process_data_events(time_limit=0.5)
            except pika.exceptions.ChannelClosedByBroker as exc:
                if exc.reply_code == 404:
                    with self._cond:
                        self._fatal = NotFound(
                            f"queue {self._location.queue!r} does not exist in vhost "
                            f"{self._location.vhost!r}"
                        )
                    self._lost(exc, connection)
                    return
                self._lost(exc, connection)
            except pika.exceptions.ProbableAccessDeniedError as exc:
                self._lost(exc, connection, hint="the vhost may not exist or the user may not "
                           "be allowed on it")
            except pika.exceptions.ProbableAuthenticationError as exc:
                self._lost(exc, connection, hint="check the user and password in the source URI")
            except _PIKA_ERRORS as exc:
                self._lost(exc, connection)
            except Exception as exc:  # pika lets a few other types out of broken sockets
                log.warning("queue %r: unexpected consumer failure, reconnecting", self._queue_key,
                            exc_info=True)
                self._lost(exc, connection)
            else:
                self._lost(None, connection)
                return
            self._closing.wait(backoff)
            backoff = min(backoff * 2, 5.0)

    def _lost(
        self, exc: BaseException | None, connection: BlockingConnection | None, hint: str = ""
    ) -> None:
        with self._cond:
            self._connection = None
            self._channel = None
            self._generation += 1  # everything delivered on the old connection is stale
            self._buffer.clear()
            self._error = f"RabbitMQ connection lost: {exc!r}" if exc else "closed"
            self._error += f" ({hint})" if hint else ""
            self._failures += 1 if exc else 0
            self._cond.notify_all()
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except _PIKA_ERRORS:
                pass

    @staticmethod
    def _on_cancel(_: Any) -> None:
        raise _Cancelled("the broker cancelled the consumer")

    def _on_message(
        self, _: BlockingChannel, method: Basic.Deliver, props: BasicProperties, body: bytes
    ) -> None:
        self._on_delivery(method.delivery_tag, bool(method.redelivered), props, body)

    def _on_delivery(
        self, tag: int, redelivered: bool, props: BasicProperties, body: bytes
    ) -> None:
        self._outstanding[tag] = None
        delivery = _Delivery(self._generation, tag, redelivered, props, body)
        with self._cond:
            self._buffer.append(delivery)
            if len(self._buffer) == 1:
                self._cond.notify_all()

    # -- the record --------------------------------------------------------------------------

    def _record(self, delivery: _Delivery) -> SourceRecord:
        props, body = delivery.properties, delivery.body
        record_id = props.message_id or "sha-" + hashlib.blake2b(body, digest_size=12).hexdigest()
        base, n = record_id, 1
        while (held := self._inflight.get(record_id)) is not None \
                and held[0] == delivery.generation:  # two identical messages in flight at once
            n += 1
            record_id = f"{base}#{n}"
        record = rmq_message(props, body, delivery.redelivered)
        raw = orjson.dumps(record)
        arrival = float(props.timestamp) if props.timestamp else time.time()
        return SourceRecord(record_id, body, record, len(raw), arrival, json=raw)
