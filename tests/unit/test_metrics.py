"""The Prometheus registry's text format, without services."""

from __future__ import annotations

from warren.observe.metrics import Registry


def test_counters_gauges_and_histograms_render_in_the_text_format() -> None:
    registry = Registry()
    calls = registry.counter("warren_x_total", "Calls.", ("function",))
    calls.inc(("a",))
    calls.inc(("a",), 2)
    calls.inc(('we"ird\\',))
    registry.gauge("warren_up", "Up.").set((), 1)
    hist = registry.histogram("warren_t_seconds", "Time.", ("function",), buckets=(0.1, 1.0))
    for v in (0.05, 0.5, 0.7, 3.0):
        hist.observe(("a",), v)
    registry.computed("warren_c", "Computed.", ("k",), lambda: {("z",): 1.5})
    text = registry.render()
    assert "# TYPE warren_x_total counter" in text
    assert 'warren_x_total{function="a"} 3' in text
    assert 'warren_x_total{function="we\\"ird\\\\"} 1' in text
    assert "warren_up 1" in text
    assert 'warren_t_seconds_bucket{function="a",le="0.1"} 1' in text
    assert 'warren_t_seconds_bucket{function="a",le="1"} 3' in text
    assert 'warren_t_seconds_bucket{function="a",le="+Inf"} 4' in text
    assert 'warren_t_seconds_count{function="a"} 4' in text
    assert 'warren_t_seconds_sum{function="a"} 4.25' in text
    assert 'warren_c{k="z"} 1.5' in text
    assert text.endswith("\n")


def test_probe_server_answers_and_the_wait_helper_waits_for_ready() -> None:
    from warren.observe.probe import ProbeServer
    from warren.observe.wait import wait

    missing = ["Redis"]
    server = ProbeServer(0, Registry(), lambda: list(missing), host="127.0.0.1").start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        assert wait(base + "/healthz", 5)
        assert not wait(base + "/readyz", 0.6)  # 503 while something is missing
        missing.clear()
        assert wait(base + "/readyz", 5)
    finally:
        server.stop()


def test_destination_failures_are_counted_per_function_and_still_raise() -> None:
    import pytest

    from router.metrics import CountedDestinations
    from warren.errors import BrokerUnavailable
    from warren.settings import Settings

    class Sink:
        def __init__(self, fail: bool) -> None:
            self.fail = fail

        def send(self, record: dict[str, object]) -> None:
            if self.fail:
                raise BrokerUnavailable("down")

        def close(self) -> None:
            return None

    registry = Registry()
    destinations = CountedDestinations(Settings.from_environ({}), None, registry)
    destinations._open = {"amqp:///ok": Sink(False), "amqp:///down": Sink(True)}
    record = {"requestContext": {"functionArn": "arn:aws:lambda:us-east-1:0:function:f:$LATEST"}}
    destinations.send("amqp:///ok", record)
    with pytest.raises(BrokerUnavailable):
        destinations.send("amqp:///down", record)
    text = registry.render()
    assert 'warren_destination_records_total{function="f"} 1' in text
    assert 'warren_destination_delivery_failures_total{function="f"} 1' in text
