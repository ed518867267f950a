"""An MQTT source's location and its persistent session: connect, subscribe, start and end it."""

from __future__ import annotations

import ssl
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from broker_adapters.sources.mqtt_client import BufferedClient
from warren.errors import InvalidParameter, Unavailable

_URI_HINT = (
    "an MQTT source looks like mqtt://USER:PASS@HOST:1883/TOPIC/FILTER/#?qos=1"
    "[&topic_field=NAME] (mqtts:// for TLS)"
)
SESSION_EXPIRY_S = 0xFFFFFFFF  # the broker keeps the session (and its queue) until purged
RECEIVE_MAXIMUM = 65535        # un-acked messages the broker may send us at once


@dataclass(frozen=True)
class MqttLocation:
    host: str
    port: int
    topic: str
    qos: int = 1
    topic_field: str | None = None
    username: str | None = None
    password: str | None = None
    tls: bool = False

    @classmethod
    def parse(cls, uri: str) -> MqttLocation:
        # Not urlsplit: a topic filter's `#` would be read as a URL fragment.
        scheme, sep, rest = uri.partition("://")
        if scheme not in ("mqtt", "mqtts") or not sep:
            raise InvalidParameter(f"bad source {uri!r}: {_URI_HINT}")
        netloc, _, tail = rest.partition("/")
        path, _, query_text = tail.partition("?")
        topic = unquote(path)
        query = {k: v[-1] for k, v in parse_qs(query_text, keep_blank_values=True).items()}
        userinfo, _, hostport = netloc.rpartition("@")
        host, _, port_text = hostport.partition(":")
        user, _, password = userinfo.partition(":")
        if set(query) - {"qos", "topic_field"} or not _valid_filter(topic):
            raise InvalidParameter(f"bad source {uri!r}: {_URI_HINT}")
        if query.get("qos", "1") not in ("0", "1", "2"):
            raise InvalidParameter(f"bad qos in {uri!r}: 0, 1 (the default) or 2")
        if port_text and not (port_text.isdigit() and 0 < int(port_text) < 65536):
            raise InvalidParameter(f"bad port in {uri!r}: {_URI_HINT}")
        if query.get("topic_field") == "":
            raise InvalidParameter(f"empty topic_field in {uri!r}: {_URI_HINT}")
        return cls(
            host=host or "127.0.0.1",
            port=int(port_text) if port_text else (8883 if scheme == "mqtts" else 1883),
            topic=topic, qos=int(query.get("qos", "1")), topic_field=query.get("topic_field"),
            username=unquote(user) if user else None,
            password=unquote(password) if password else None,
            tls=scheme == "mqtts",
        )


def _valid_filter(topic: str) -> bool:
    if not topic or "\0" in topic:
        return False
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


def client_id(mapping_id: str) -> str:
    """One session per mapping: whichever poller owns the mapping takes it over."""
    return f"warren-{mapping_id}"


def new_client(location: MqttLocation, mapping_id: str) -> BufferedClient:
    client = BufferedClient(
        CallbackAPIVersion.VERSION2, client_id=client_id(mapping_id),
        protocol=mqtt.MQTTv5, manual_ack=True,
    )
    if location.username is not None:
        client.username_pw_set(location.username, location.password)
    if location.tls:
        client.tls_set_context(ssl.create_default_context())
    return client


def session_properties(expiry_s: int = SESSION_EXPIRY_S) -> Properties:
    props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
    props.SessionExpiryInterval = expiry_s
    props.ReceiveMaximum = RECEIVE_MAXIMUM
    return props


def subscription(location: MqttLocation) -> tuple[str, SubscribeOptions]:
    # retainHandling 1: a retained message comes with a new subscription only, not again on
    # every reconnect of the same session.
    return (location.topic, SubscribeOptions(qos=location.qos, retainHandling=1))


def _session(uri: str, mapping_id: str, *, keep: bool) -> None:
    """Connect once: with `keep`, start the persistent session and subscribe (messages are
    queued for the mapping from now on); without, end the session (its queue goes too)."""
    location = MqttLocation.parse(uri)
    client = new_client(location, mapping_id)
    done = threading.Event()
    outcome: list[str] = []

    def on_connect(c: mqtt.Client, _u: Any, _f: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:
            outcome.append(f"refused: {reason}")
            done.set()
        elif keep:
            c.subscribe([subscription(location)])
        else:
            done.set()

    def on_subscribe(_c: mqtt.Client, _u: Any, _mid: int, reasons: Any, _p: Any) -> None:
        if any(r.is_failure for r in reasons):
            outcome.append(f"subscription to {location.topic!r} refused: {reasons[0]}")
        done.set()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    try:
        client.connect(location.host, location.port, keepalive=30, clean_start=not keep,
                       properties=session_properties(SESSION_EXPIRY_S if keep else 0))
    except OSError as exc:
        raise Unavailable(f"MQTT broker {location.host}:{location.port}: {exc}") from exc
    client.loop_start()
    try:
        if not done.wait(10):
            raise Unavailable(f"MQTT broker {location.host}:{location.port} did not answer")
    finally:
        client.disconnect()
        client.loop_stop()
    if outcome:
        raise InvalidParameter(f"MQTT broker {location.host}:{location.port}: {outcome[0]}")


def prepare_session(uri: str, mapping_id: str) -> None:
    _session(uri, mapping_id, keep=True)


def end_session(uri: str, mapping_id: str) -> None:
    _session(uri, mapping_id, keep=False)
