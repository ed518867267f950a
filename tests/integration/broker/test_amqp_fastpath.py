"""pika's fast paths: installed on the pika in use, switchable, loud when missing, and invisible
in what comes out (the same deliveries and confirms with and without them)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from types import SimpleNamespace

import pika
import pytest
from support.queue_kit import open_queue, publish

from broker_adapters.amqp import Backbone
from broker_adapters.amqp_fastpath import (
    ALL_PATHS,
    CONSUMER_PATHS,
    PUBLISHER_PATHS,
    TESTED_PIKA,
    install,
    supported,
)
from warren.errors import BrokerUnavailable, ConfigError
from warren.keys import Keys
from warren.settings import Settings

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def connection(amqp_url):
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    yield conn
    if conn.is_open:
        conn.close()


def settings(amqp_url: str, fastpath: bool) -> Settings:
    return Settings.from_environ({"WARREN_AMQP_FASTPATH": "1" if fastpath else "0"},
                                 amqp_url=amqp_url)


# -- installed, and loud when not ----------------------------------------------------------------


def test_every_fast_path_installs_on_the_pika_in_use(connection, amqp_url, unique):
    # The pin in setup.cfg and the tested range agree, and the installed pika is inside it.
    assert supported(pika.__version__), (pika.__version__, TESTED_PIKA)
    assert "pika>=1.3,<2" in (ROOT / "setup.cfg").read_text()

    # When every path is asked for on a plain connection, every one is active.
    fast = install(connection, enabled=True)
    assert fast.report.active == ALL_PATHS, fast.report.describe()
    assert fast.report.unavailable == ()

    # And the fleet's Backbone gets its paths.
    backbone = Backbone(settings(amqp_url, True).amqp, Keys(f"t-{unique}"))
    try:
        assert backbone.fastpaths.report.active == PUBLISHER_PATHS
    finally:
        backbone.close()


def test_what_is_active_is_logged_once_per_process(amqp_url, caplog):
    # Every connection of a process gets the same report: it is logged the first time only.
    conns = [pika.BlockingConnection(pika.URLParameters(amqp_url)) for _ in range(2)]
    try:
        with caplog.at_level(logging.INFO, logger="warren.amqp"):
            for conn in conns:
                install(conn, enabled=True, paths=CONSUMER_PATHS, version="1.3.777")
        lines = [r.getMessage() for r in caplog.records if r.name == "warren.amqp"]
        assert lines == [
            "pika 1.3.777: AMQP fast paths active: delivery-frames, batched-settles"
        ]
    finally:
        for conn in conns:
            conn.close()


def test_switched_off_nothing_of_pika_is_touched(connection, caplog):
    impl = connection._impl
    before = (impl._output_marshaled_frames, impl._on_data_available,
              impl._transport._MAX_RECV_BYTES)
    with caplog.at_level(logging.INFO, logger="warren.amqp"):
        fast = install(connection, enabled=False)
    assert fast.report.active == () and fast.report.enabled is False
    assert (impl._output_marshaled_frames, impl._on_data_available,
            impl._transport._MAX_RECV_BYTES) == before
    assert fast.decode_deliveries(SimpleNamespace(taken=0, take=None)) is False


def test_an_untested_pika_release_gets_no_fast_path_and_a_warning(connection, caplog):
    with caplog.at_level(logging.WARNING, logger="warren.amqp"):
        fast = install(connection, enabled=True, paths=CONSUMER_PATHS, version="2.0.0")
    assert fast.report.active == ()
    assert [p for p, _ in fast.report.unavailable] == list(CONSUMER_PATHS)
    assert "outside the tested range >=1.3,<2" in caplog.text
    assert not supported("1.2.1") and not supported("2.0.0") and not supported("garbage")


def test_a_missing_hook_is_reported_by_name_not_skipped(caplog):
    # A pika whose connection lacks the hooks (as a future release might).
    conn = SimpleNamespace(_impl=SimpleNamespace(_transport=None))
    with caplog.at_level(logging.WARNING, logger="warren.amqp"):
        fast = install(conn, enabled=True, version="1.3.99")  # type: ignore[arg-type]
    assert fast.report.active == ()
    why = dict(fast.report.unavailable)
    assert set(why) == set(ALL_PATHS)
    assert "impl._output_marshaled_frames" in why["coalesced-writes"]
    assert "transport._MAX_RECV_BYTES" in why["large-reads"]
    assert "conn._flush_output" in why["confirm-pipeline"]
    assert "NOT installed" in caplog.text


def test_the_switch_is_read_at_the_edge():
    assert Settings.from_environ({}).amqp.fastpath is True
    assert Settings.from_environ({"WARREN_AMQP_FASTPATH": "0"}).amqp.fastpath is False
    assert Settings.from_environ({"WARREN_AMQP_FASTPATH": "off"}).amqp.fastpath is False
    with pytest.raises(ConfigError, match="WARREN_AMQP_FASTPATH"):
        Settings.from_environ({"WARREN_AMQP_FASTPATH": "maybe"})


# -- the same results with and without ----------------------------------------------------------


BODIES = [b"", b"x", bytes(range(256)) * 1024, b"y" * 300_000, *(b"m%d" % n for n in range(200))]


def backbone_story(amqp_url: str, fastpath: bool, unique: str) -> dict[str, object]:
    """Everything a Backbone's user can observe of confirms and deliveries, as data."""
    prefix = f"t-fp-{int(fastpath)}-{unique}"
    queue, full = f"{prefix}.q", f"{prefix}.full"
    backbone = Backbone(settings(amqp_url, fastpath).amqp, Keys(prefix))
    raw = pika.BlockingConnection(pika.URLParameters(amqp_url))
    story: dict[str, object] = {}
    try:
        assert bool(backbone.fastpaths.report.active) is fastpath
        backbone.declare_queue(queue)
        backbone.publish_many(queue, BODIES[:100], headers={"k": "v"})
        backbone.publish_many(queue, BODIES[100:])
        backbone.publish(queue, b"alone", headers={"n": 1}, correlation_id="c1")
        deliveries: list[tuple] = []

        def take(d) -> None:
            deliveries.append((d.body, d.headers, d.correlation_id, d.redelivered))
            backbone.ack(d.tag)

        backbone.consume(queue, take, prefetch=50)
        deadline = time.monotonic() + 20
        while len(deliveries) < len(BODIES) + 1 and time.monotonic() < deadline:
            backbone.process(0.2)
        story["deliveries"] = deliveries
        # A return (no such queue) and a nack (a full queue refusing) both fail the publish.
        raw.channel().queue_declare(full, arguments={"x-max-length": 1,
                                                     "x-overflow": "reject-publish"})
        for name, target in (("no queue", f"{prefix}.nowhere"), ("full queue", full)):
            try:
                backbone.publish_many(target, [b"1", b"2"])
                story[name] = "confirmed"
            except BrokerUnavailable as exc:
                story[name] = ("refused", "returned" in str(exc))
        backbone.publish(queue, b"still works")
        while len(deliveries) < len(BODIES) + 2 and time.monotonic() < deadline:
            backbone.process(0.2)
    finally:
        raw.channel().queue_delete(full)
        raw.close()
        backbone.delete_queue(queue)
        backbone.close()
    return story


def test_backbone_confirms_and_deliveries_are_the_same_with_and_without(amqp_url, unique):
    fast, plain = (backbone_story(amqp_url, flag, unique) for flag in (True, False))
    assert len(fast["deliveries"]) == len(BODIES) + 2  # type: ignore[arg-type]
    assert fast == plain
    assert fast["no queue"] == ("refused", True)
    assert fast["full queue"] == ("refused", False)
    assert fast["deliveries"][-1][0] == b"still works"  # type: ignore[index]


def source_story(amqp_url, store, channel, queue, unique, fastpath: bool) -> list:
    publish(channel, queue, BODIES[:4], headers={"k": "v"}, message_id="same",
            content_type="text/plain", timestamp=2021, priority=2)
    publish(channel, queue, BODIES[4:40])
    source = open_queue(amqp_url, store, queue, unique, fastpath=fastpath)
    seen = []
    try:
        assert source._fast.report.active == (CONSUMER_PATHS if fastpath else ())
        first: list = []
        while len(first) < 40:
            first += source.read(40, 2.0)
        source.commit(first[:20])
        source.retry(first[20:])  # nacked with requeue: they come again, redelivered
        again: list = []
        while len(again) < 20:
            again += source.read(40, 2.0)
        source.commit(again)
        for record in first + again:
            seen.append((record.id, record.data, record.record))
        assert source.read(10, 0.2) == []
    finally:
        source.close()
    return seen


def test_queue_source_records_are_the_same_with_and_without(amqp_url, store, channel, queue,
                                                           unique):
    fast = source_story(amqp_url, store, channel, queue, unique, True)
    plain = source_story(amqp_url, store, channel, queue, unique, False)
    assert len(fast) == 60
    assert [r for r in fast if r[2]["redelivered"]] == fast[40:]
    assert fast == plain


@pytest.mark.parametrize("fastpath", [True, False])
def test_a_refused_batch_does_not_fail_the_next_publish(amqp_url, unique, fastpath):
    # Given a batch refused for want of a queue (each of its messages comes back returned)
    prefix = f"t-fp-next-{unique}"
    backbone = Backbone(settings(amqp_url, fastpath).amqp, Keys(prefix))
    queue = f"{prefix}.q"
    try:
        backbone.declare_queue(queue)
        for _ in range(3):
            with pytest.raises(BrokerUnavailable):
                backbone.publish_many(f"{prefix}.nowhere", [b"x" * 10_000] * 200)
            # Then the next publishes are judged on their own, not on the last batch's returns
            backbone.publish_many(queue, [b"y"] * 10)
            backbone.publish(queue, b"z")
        assert backbone.depth(queue) == 33
    finally:
        backbone.delete_queue(queue)
        backbone.close()
