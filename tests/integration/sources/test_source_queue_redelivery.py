"""The RabbitMQ queue source's records of a dead connection: dropped, never acked on the new one."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pytest
from support.proxy import CuttableProxy
from support.queue_kit import depth, open_queue, publish, read_at_least

from warren.errors import BrokerUnavailable


def test_records_of_a_dead_connection_are_dropped_and_their_redeliveries_are_new_records(
    amqp_url, store, channel, queue, unique
):
    parts = urlsplit(amqp_url)
    proxy = CuttableProxy((parts.hostname or "127.0.0.1", parts.port or 5672))
    publish(channel, queue, [f"m{i}".encode() for i in range(5)])
    source = open_queue(amqp_url, store, queue, unique, port=proxy.port, prefetch=10)
    try:
        stale = read_at_least(source, 5)
        assert source.live(stale) == stale  # all alive while their connection is

        # When: the connection they came on dies, and a new one takes their redeliveries.
        proxy.cut()
        with pytest.raises(BrokerUnavailable):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                source.read(10, 0.5)
        proxy.restore()
        fresh: list = []
        deadline = time.monotonic() + 60
        while len(fresh) < 5 and time.monotonic() < deadline:
            try:
                fresh += source.read(10, 1.0)
            except BrokerUnavailable:
                continue

        # Then: the stale records are dropped (not to be invoked), the redeliveries are new
        # records under the same ids, and settling a stale copy acks nothing of its redelivery.
        assert sorted(r.id for r in fresh) == sorted(r.id for r in stale)
        assert all(r.record["redelivered"] for r in fresh)
        assert source.live(stale[:2]) == []
        with pytest.raises(BrokerUnavailable, match="deliver them again"):
            source.commit(stale[2:])
        source.retry(stale)  # a no-op for them
        assert source.live(fresh) == fresh
        source.commit(fresh)
        source.close()  # whatever was not acked goes back to the queue now
        time.sleep(1)
        assert depth(channel, queue)[0] == 0
    finally:
        source.close()
        proxy.close()
