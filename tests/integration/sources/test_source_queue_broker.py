"""The RabbitMQ queue source when the broker is not as asked: outages, missing queues, vhosts."""

from __future__ import annotations

import socket
import time
import uuid
from urllib.parse import urlsplit

import pika
import pytest
from support.proxy import CuttableProxy
from support.queue_kit import open_queue, publish

from broker_adapters.sources import open_source
from warren.errors import BrokerUnavailable, InvalidParameter, NotFound


def test_connection_loss_is_broker_unavailable_and_unacked_messages_return(
    amqp_url, store, channel, queue, unique
):
    parts = urlsplit(amqp_url)
    proxy = CuttableProxy((parts.hostname or "127.0.0.1", parts.port or 5672))
    publish(channel, queue, [str(i).encode() for i in range(200)])
    source = open_queue(amqp_url, store, queue, unique, port=proxy.port, prefetch=50)
    try:
        held = []
        while len(held) < 50:
            held += source.read(50, 2.0)
        source.commit(held[:20])
        time.sleep(0.5)  # let the acks pass the proxy before cutting it

        # When: the network to the broker is cut for a while.
        proxy.cut()
        with pytest.raises(BrokerUnavailable):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                source.read(10, 0.5)
        with pytest.raises(BrokerUnavailable, match="deliver them again"):
            source.commit(held[20:])  # their connection is gone: they were not acked
        time.sleep(2)
        proxy.restore()

        # Then: every message not acked comes back, and the acked ones do not.
        seen = []
        deadline = time.monotonic() + 60
        while len(seen) < 180 and time.monotonic() < deadline:
            try:
                batch = source.read(100, 1.0)
            except BrokerUnavailable:
                continue
            seen += [int(r.data) for r in batch]
            source.commit(batch)
        done_before = {int(r.data) for r in held[:20]}
        assert sorted(seen) == sorted(set(range(200)) - done_before)
    finally:
        source.close()
        proxy.close()


def test_a_missing_queue_is_not_found(amqp_url, store, unique):
    with pytest.raises(NotFound, match="does not exist"):
        open_queue(amqp_url, store, f"missing-{uuid.uuid4().hex}", unique)


def test_an_unreachable_broker_is_broker_unavailable(store, unique):
    port = socket.create_server(("127.0.0.1", 0))
    free = port.getsockname()[1]
    port.close()
    with pytest.raises(BrokerUnavailable):
        open_source(f"amqp://guest:guest@127.0.0.1:{free}/%2F/q", mapping_id=unique,
                    redis=store, prefix="t", options={"consumer": "c"})


@pytest.mark.parametrize(
    "uri", ["amqp://h/q", "amqp://h:5672/%2F/", "amqp://h/%2F/q/extra", "amqp://h:x/%2F/q"]
)
def test_bad_queue_uris_say_what_a_good_one_looks_like(store, unique, uri):
    with pytest.raises(InvalidParameter, match="VHOST/QUEUE"):
        open_source(uri, mapping_id=unique, redis=store, prefix="t")


def test_deleting_the_queue_under_a_source_is_not_found(amqp_url, store, channel, unique):
    name = f"test-src-doomed-{unique}"
    channel.queue_declare(name)
    source = open_queue(amqp_url, store, name, unique)
    try:
        assert source.read(10, 0.2) == []
        channel.queue_delete(name)
        with pytest.raises(NotFound, match="does not exist"):
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                source.read(10, 0.5)
    finally:
        source.close()


def test_a_queue_in_another_vhost_is_named_queue_colon_colon_vhost(amqp_url, store, unique):
    import shutil
    import subprocess

    ctl = shutil.which("rabbitmqctl")
    if ctl is None or urlsplit(amqp_url).hostname not in ("127.0.0.1", "localhost"):
        pytest.skip("needs rabbitmqctl for the local broker to create a vhost")
    vhost = f"warren-test-{unique}"

    def run(*args: str) -> None:
        subprocess.run([ctl, *args], check=True, capture_output=True, timeout=60)

    run("add_vhost", vhost)
    try:
        run("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        parts = urlsplit(amqp_url)
        params = pika.ConnectionParameters(
            host=parts.hostname, port=parts.port or 5672, virtual_host=vhost,
            credentials=pika.PlainCredentials(parts.username or "guest",
                                              parts.password or "guest"))
        connection = pika.BlockingConnection(params)
        connection.channel().queue_declare("orders")
        connection.channel().basic_publish("", "orders", b"in a vhost")
        source = open_source(
            f"amqp://{parts.username}:{parts.password}@{parts.hostname}:{parts.port or 5672}"
            f"/{vhost}/orders",
            mapping_id=f"m-{unique}", redis=store, prefix="t", options={"consumer": "c"},
        )
        try:
            records = source.read(10, 5.0)
            assert [r.data for r in records] == [b"in a vhost"]
            assert list(source.event(records)["rmqMessagesByQueue"]) == [f"orders::{vhost}"]
            source.commit(records)
        finally:
            source.close()
            connection.close()
    finally:
        run("delete_vhost", vhost)


def test_wrong_credentials_are_broker_unavailable_with_a_hint(amqp_url, store, queue, unique):
    parts = urlsplit(amqp_url)
    host = f"{parts.hostname}:{parts.port or 5672}"
    uri = f"amqp://{parts.username}:wrong-{unique}@{host}/%2F/{queue}"
    with pytest.raises(BrokerUnavailable, match="user and password"):
        open_source(uri, mapping_id=unique, redis=store, prefix="t", options={"consumer": "c"})


def test_an_unknown_vhost_is_broker_unavailable_with_a_hint(amqp_url, store, queue, unique):
    parts = urlsplit(amqp_url)
    uri = (f"amqp://{parts.username}:{parts.password}@{parts.hostname}:{parts.port or 5672}"
           f"/no-such-vhost-{unique}/{queue}")
    with pytest.raises(BrokerUnavailable, match="vhost"):
        open_source(uri, mapping_id=unique, redis=store, prefix="t", options={"consumer": "c"})
