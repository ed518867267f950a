"""/metrics, /healthz and /readyz of real worker, router and poller processes."""

from __future__ import annotations

import re
import socket
import urllib.error
import urllib.request

import orjson
import pytest
from support.fleet import Fleet

from warren.errors import TooManyRequests
from warren.store.mappings import MappingStore
from warren.store.throttles import ThrottleStore

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:  # an HTTPError holds the response open
            return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def value(text: str, name: str, **labels: str) -> float | None:
    """A sample's value from the exposition text, matched on the labels given."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        match = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})? (\S+)", line)
        if not match or match[1] != name:
            continue
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', match[2] or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match[3])
    return None


def test_worker_serves_invocations_errors_duration_and_probes(fleet: Fleet) -> None:
    # Given a worker serving its metrics, and two functions, one failing
    port = free_port()
    fleet.function("counted", handler="app.span")
    fleet.function("broken", handler="app.fail")
    fleet.spawn(
        "worker", "--slots", "2", "--cache-dir", str(fleet.cache_dir), "--metrics-port", str(port)
    )
    fleet.wait_for(lambda: get(port, "/readyz")[0] == 200, what="the worker ready")
    assert get(port, "/healthz") == (200, "ok\n")
    # When they are invoked
    for n in range(4):
        fleet.client.invoke("counted", {"sleep": 0.01, "n": n})
    fleet.client.invoke("broken", {})
    # Then the worker's /metrics counts them per function and version
    _, text = get(port, "/metrics")
    fn = {"function": "counted", "version": "$LATEST"}
    assert value(text, "warren_invocations_total", **fn) == 4
    assert value(text, "warren_errors_total", **fn) is None
    assert value(text, "warren_errors_total", function="broken", version="$LATEST") == 1
    assert value(text, "warren_duration_seconds_count", **fn) == 4
    assert value(text, "warren_duration_seconds_bucket", le="0.001", **fn) == 0
    assert value(text, "warren_duration_seconds_bucket", le="+Inf", **fn) == 4
    assert value(text, "warren_init_duration_seconds_count", **fn) == 1
    assert value(text, "warren_worker_slots") == 2
    assert value(text, "warren_concurrent_executions", function="counted") == 0
    assert "# TYPE warren_duration_seconds histogram" in text
    assert get(port, "/nothing")[0] == 404


def test_router_counts_async_events_and_throttles_and_sync_429s_reach_redis(fleet: Fleet) -> None:
    # Given a function reserved at 1, a router serving metrics and a worker
    port = free_port()
    fleet.function("narrow", handler="app.span", concurrency=1)
    fleet.worker(slots=2)
    fleet.spawn("router", "--metrics-port", str(port))
    fleet.wait_for(lambda: get(port, "/readyz")[0] == 200, what="the router ready")
    # When more async events arrive than the reservation admits at once
    fleet.client.invoke_many("narrow", [{"sleep": 0.3, "n": n} for n in range(6)])
    fleet.wait_for(
        lambda: (value(get(port, "/metrics")[1], "warren_throttles_total",
                       function="narrow", kind="async") or 0) > 0,
        what="a throttle counted",
    )
    _, text = get(port, "/metrics")
    assert (value(text, "warren_async_events_received_total", function="narrow") or 0) >= 6
    assert value(text, "warren_async_event_age_seconds_count", function="narrow") == 6
    # And a sync call while the one lease is taken is a 429, counted in the throttle hash
    fleet.wait_for(lambda: fleet.redis.zcard(fleet.keys.function_leases("narrow")) == 0,
                   what="the async events done")
    fleet.client.invoke_many("narrow", [{"sleep": 3}])
    fleet.wait_for(lambda: fleet.redis.zcard(fleet.keys.function_leases("narrow")) == 1,
                   what="the long event running")
    with pytest.raises(TooManyRequests):
        fleet.client.invoke("narrow", {"sleep": 0})
    throttles = ThrottleStore(fleet.redis, fleet.prefix).read()
    assert throttles[("narrow", "sync")] >= 1 and throttles[("narrow", "async")] >= 1


def test_poller_serves_its_mappings_lag_and_record_counts(fleet: Fleet) -> None:
    # Given a stream with records, a mapping, a worker and a poller serving metrics
    port = free_port()
    stream = f"{fleet.prefix}-src"
    for n in range(30):
        fleet.redis.xadd(stream, {"data": orjson.dumps({"n": n})})
    fleet.function("reader", handler="app.trivial")
    spec = MappingStore(fleet.redis, fleet.prefix).create(
        function="reader", source=f"redis+stream:///{stream}", batch_size=10
    )
    fleet.worker(slots=2)
    fleet.spawn("poller", "--metrics-port", str(port))

    def counted() -> bool:
        text = get(port, "/metrics")[1]
        return value(text, "warren_mapping_records_invoked_total", mapping=spec.uuid) == 30

    # Then its /metrics shows the records read and invoked, and the iterator age
    fleet.wait_for(counted, timeout=60, what="30 records counted")
    _, text = get(port, "/metrics")
    labels = {"mapping": spec.uuid, "function": "reader"}
    assert value(text, "warren_mapping_records_read_total", **labels) == 30
    assert value(text, "warren_iterator_age_seconds", **labels) is not None
    assert (value(text, "warren_mapping_batch_size", **labels) or 0) > 1
    assert get(port, "/readyz")[0] == 200
