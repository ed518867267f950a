"""GET /metrics: the fleet-wide Prometheus view (warren/observe/fleet.py) plus queue depths.

Read from Redis and the broker on a worker thread at each scrape; nothing on the request path
of invocations. Open like /healthz (a scraper does not sign requests): it names functions,
mappings and workers, never payloads or keys.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from broker_adapters.amqp import Backbone
from warren.errors import WarrenError
from warren.keys import DEFAULT_POOL
from warren.observe.fleet import fleet_registry
from warren.observe.metrics import Gauge, Metric, Registry, Sample
from warren.observe.probe import CONTENT_TYPE

_lock = threading.Lock()  # one scrape at a time per process: the registry is built once


def _registry(gw: Any) -> Registry:
    with _lock:
        registry: Registry | None = getattr(gw, "fleet_metrics", None)
        if registry is None:
            registry = fleet_registry(gw.redis, gw.settings.prefix, gw.mappings)
            registry.collect(_queues(gw, registry))
            gw.fleet_metrics = registry
        return registry


def _queues(gw: Any, registry: Registry) -> Any:
    depth = Gauge("warren_queue_messages", "Messages ready in each of the fleet's queues.",
                  ("queue",), registry.lock)

    def collect() -> list[tuple[Metric, list[Sample]]]:
        keys = gw.topology
        pools = {DEFAULT_POOL}
        for key in gw.redis.scan_iter(keys.workers_pattern, count=1000):
            pool = gw.redis.hget(key, "pool")
            if pool:
                pools.add(pool.decode())
        pools.update(spec.pool for spec in gw.registry.list_functions())
        names = [keys.async_queue, *(keys.work_queue(p) for p in sorted(pools)),
                 *(keys.sync_queue(p) for p in sorted(pools)), keys.dead_queue]
        samples: list[Sample] = []
        try:
            backbone = Backbone(gw.settings.amqp, keys, name="warren-gateway-metrics")
        except WarrenError:
            return [(depth, samples)]  # the broker is away: /readyz says so
        try:
            for name in names:
                count = backbone.depth(name)
                if count is not None:
                    samples.append((depth.name, (name,), float(count)))
        except WarrenError:
            pass
        finally:
            backbone.close()
        return [(depth, samples)]

    return collect


async def metrics(request: Request) -> Response:
    gw = request.app.state.gateway
    text = await asyncio.to_thread(lambda: _registry(gw).render())
    return Response(text, media_type=CONTENT_TYPE)


ROUTES = [Route("/metrics", metrics, methods=["GET"])]
