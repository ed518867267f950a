"""paho's MQTT client with buffered socket reads and batched acks: a stream of small messages
costs far fewer system calls (paho reads each packet's header a byte at a time, one recv per
byte, and writes each PUBACK with a send of its own)."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode

_READ_BYTES = 256 * 1024
_PUBACK = 0x40
_PUBACK_PACKET = struct.Struct("!BBH")  # type, remaining length 2, packet id (success)


class BufferedClient(mqtt.Client):
    """Reads up to 256 KB per recv and serves paho's small reads from that buffer.

    paho waits in select() for the socket before it reads the next packet, so packets left in
    our buffer are read at once after each select wake-up (`loop_read`), not at the next one.
    Relies on paho 2's `_sock_recv` / `_packet_read` (setup.cfg pins paho-mqtt < 3); the MQTT
    tests cover it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._rbuf = bytearray()
        self._rsock: Any = None

    def _sock_recv(self, bufsize: int) -> bytes:
        if self._rsock is not self._sock:  # a new connection: nothing old may be served
            self._rbuf.clear()
            self._rsock = self._sock
        if not self._rbuf:
            data = super()._sock_recv(_READ_BYTES)
            if len(data) <= bufsize:
                return data
            self._rbuf += data
        out = bytes(self._rbuf[:bufsize])
        del self._rbuf[:bufsize]
        return out

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        rc = super().loop_read(max_packets)
        while (rc == MQTTErrorCode.MQTT_ERR_SUCCESS and self._rbuf
               and self._sock is not None and self._rsock is self._sock):
            rc = self._packet_read()
            if rc > 0:
                return self._loop_rc_handle(rc)
        return MQTTErrorCode.MQTT_ERR_SUCCESS if rc == MQTTErrorCode.MQTT_ERR_AGAIN else rc

    def ack_all(self, mids: Sequence[int]) -> None:
        """The PUBACKs of these QoS 1 messages, in this order, as one write (one wake-up of
        paho's network thread instead of one per message)."""
        if mids:
            data = b"".join([_PUBACK_PACKET.pack(_PUBACK, 2, mid) for mid in mids])
            self._packet_queue(_PUBACK, data, 0, 1)
