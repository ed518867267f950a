"""MQTT source: a persistent QoS 1 session, each message acked only after its batch is done."""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

import orjson
import paho.mqtt.client as mqtt

from broker_adapters.sources.mqtt_session import (
    MqttLocation,
    new_client,
    session_properties,
    subscription,
)
from warren.errors import InvalidParameter, Unavailable
from warren.source import SourceIdentity, SourceRecord, records_json

log = logging.getLogger("warren.sources")


class MqttSource:
    """Reads one topic filter through the mapping's persistent session (clean start off).

    paho's network thread fills a buffer; `commit` sends the PUBACKs, in arrival order as MQTT
    asks. When the connection drops, the broker keeps every un-acked message and sends it again
    on the next connection: what was buffered is forgotten, and records of the old connection
    are never acked on the new one (their packet ids mean other messages there).

    The event is what an IoT rule's `SELECT *` sends: with a batch size of 1 the payload itself,
    else a JSON array of payloads in arrival order; `topic_field` adds the topic to each object
    payload, and a payload that is not JSON arrives as {"base64": ..., "topic": ...}.
    """

    kind = "mqtt"
    ordered = True

    def __init__(self, location: MqttLocation, identity: SourceIdentity, *, batch_size: int = 1,
                 connect_timeout_s: float = 10.0) -> None:
        self._location = location
        self._where = f"MQTT broker {location.host}:{location.port}"
        self._single = batch_size == 1
        self._cond = threading.Condition()
        self._buffer: deque[SourceRecord] = deque()
        self._acks: dict[str, tuple[int, int, int]] = {}  # id -> (generation, mid, qos)
        self._generation = 0
        self._counter = 0  # QoS 0 messages have no packet id
        self._connected = False
        self._error = "not connected yet"
        self._fatal: Exception | None = None
        self._client = new_client(location, identity.mapping_id)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.reconnect_delay_set(1, 5)
        try:
            self._client.connect_async(location.host, location.port, keepalive=30,
                                       clean_start=False, properties=session_properties())
        except (OSError, ValueError) as exc:
            raise Unavailable(f"{self._where}: {exc}") from exc
        self._client.loop_start()
        with self._cond:
            self._cond.wait_for(lambda: self._connected or self._fatal is not None,
                                timeout=connect_timeout_s)
            ready, fatal = self._connected, self._fatal
        if not ready:
            self.close()
            raise fatal or Unavailable(f"{self._where}: {self._error}")

    # -- paho's network thread --------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            with self._cond:
                self._error = str(reason)
                if reason.value in (0x86, 0x87, 0x8C):  # bad credentials, not authorised
                    self._fatal = InvalidParameter(f"{self._where} refused us: {reason}")
                self._cond.notify_all()
            return
        client.subscribe([subscription(self._location)])
        with self._cond:
            self._generation += 1
            self._connected = True
            self._cond.notify_all()

    def _on_disconnect(self, _c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        with self._cond:
            self._connected = False
            self._error = f"disconnected: {reason}"
            for record in self._buffer:  # the broker sends all of it again on the next one
                self._acks.pop(record.id, None)
            self._buffer.clear()
            self._cond.notify_all()

    def _on_message(self, _c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        payload, topic = bytes(message.payload), message.topic
        raw = self._json(payload, topic)
        with self._cond:
            generation = self._generation
            if message.qos:
                # Stable across a restart (a redelivery keeps its packet id), unique while
                # un-acked.
                rid = f"{generation}.{message.mid}"
                self._acks[rid] = (generation, message.mid, message.qos)
            else:
                self._counter += 1
                rid = f"{generation}.q{self._counter}"
            if not self._buffer:
                self._cond.notify()  # a reader waits only on an empty buffer
            self._buffer.append(SourceRecord(rid, payload, None, len(raw) + 1, time.time(),
                                             partition=topic, json=raw))

    def _json(self, payload: bytes, topic: str) -> bytes:
        try:
            value = orjson.loads(payload)
        except orjson.JSONDecodeError:
            return orjson.dumps({"base64": base64.b64encode(payload).decode(), "topic": topic})
        field = self._location.topic_field
        if field and isinstance(value, dict):
            value[field] = topic
            return orjson.dumps(value)
        return payload

    # -- the seam ---------------------------------------------------------------------------

    def read(self, max_records: int, wait_s: float) -> list[SourceRecord]:
        deadline = time.monotonic() + max(0.0, wait_s)
        with self._cond:
            while not self._buffer and self._fatal is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            if self._fatal is not None:
                raise self._fatal
            if not self._buffer and not self._connected:
                raise Unavailable(f"{self._where}: {self._error}")
            count = min(max_records, len(self._buffer))
            return [self._buffer.popleft() for _ in range(count)]

    def event(self, records: Sequence[SourceRecord]) -> Any:
        payloads = orjson.loads(records_json(records))
        return payloads[0] if self._single and len(payloads) == 1 else payloads

    def encoded_event(self, records: Sequence[SourceRecord]) -> Any:
        if self._single and len(records) == 1:
            return orjson.Fragment(records[0].encoded())
        return orjson.Fragment(records_json(records))

    def commit(self, records: Sequence[SourceRecord]) -> None:
        with self._cond:
            generation = self._generation if self._connected else -1
            acks = [self._acks.pop(r.id, None) for r in records]
        live = [a for a in acks if a is not None and a[0] == generation]
        self._client.ack_all([mid for _, mid, qos in live if qos == 1])
        for _, mid, qos in live:
            if qos == 2:
                self._client.ack(mid, qos)

    def retry(self, records: Sequence[SourceRecord]) -> None:
        with self._cond:
            live = [r for r in records if self._acks.get(r.id, (-1,))[0] == self._generation]
            for record in records:  # the broker sends the others again on this connection
                if self._acks.get(record.id, (self._generation,))[0] != self._generation:
                    del self._acks[record.id]
            self._buffer.extendleft(reversed(live))
            self._cond.notify()

    def lag_s(self) -> float | None:
        with self._cond:
            return max(0.0, time.time() - self._buffer[0].arrival) if self._buffer else 0.0

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
