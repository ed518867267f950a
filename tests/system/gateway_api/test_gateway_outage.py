"""The gateway when its broker goes away mid-request: a 5xx for the caller, then recovery."""

from __future__ import annotations

import json
import threading
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from botocore.exceptions import ClientError
from support.gatewaykit import GatewayKit, fetch, sweep_dropped_connections, unique_name
from support.proxy import CuttableProxy

pytestmark = pytest.mark.slow


def through(proxy: CuttableProxy, url: str) -> str:
    parts = urlsplit(url)
    auth = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=f"{auth}@127.0.0.1:{proxy.port}"))


def ready(endpoint: str) -> tuple[int, dict[str, Any]]:
    status, _, body = fetch(endpoint + "/readyz")
    return status, json.loads(body)


def test_a_broker_that_goes_away_mid_request_gives_a_5xx_then_the_gateway_recovers(
    module_fleet: Any,
) -> None:
    # Given a gateway that reaches RabbitMQ through a proxy the test can cut
    url = module_fleet.env["WARREN_AMQP_URL"]
    parts = urlsplit(url)
    proxy = CuttableProxy((parts.hostname or "127.0.0.1", parts.port or 5672))
    gw = GatewayKit(module_fleet, through(proxy, url))
    try:
        name = unique_name("slow")
        gw.create(name, handler="app.slow", Timeout=10)
        lam = gw.client()
        assert lam.invoke(FunctionName=name, Payload=b'{"sleep": 0}')["StatusCode"] == 200
        assert ready(gw.endpoint)[0] == 200
        # When the broker connection drops while a call waits for its reply
        timer = threading.Timer(0.5, proxy.cut)
        timer.start()
        with pytest.raises(ClientError) as info:
            lam.invoke(FunctionName=name, Payload=b'{"sleep": 2}')
        timer.join()
        # Then the caller gets a 5xx saying what is missing
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] >= 500
        assert "RabbitMQ" in info.value.response["Error"]["Message"]
        # And while it stays down, /readyz says so and calls fail at once, the same way
        status, body = ready(gw.endpoint)
        assert status == 503 and body["rabbitmq"] != "ok" and body["redis"] == "ok"
        with pytest.raises(ClientError) as again:
            lam.invoke(FunctionName=name, Payload=b'{"sleep": 0}')
        assert again.value.response["ResponseMetadata"]["HTTPStatusCode"] >= 500
        # When it is back, the gateway reconnects: calls and /readyz are fine again
        proxy.restore()
        out = lam.invoke(FunctionName=name, Payload=b'{"sleep": 0}')
        assert out["StatusCode"] == 200 and "FunctionError" not in out
        assert ready(gw.endpoint)[0] == 200
        del info, again  # their tracebacks hold the connections the outage cut: sweep them
    finally:
        gw.close()
        module_fleet.stop(gw.proc)
        proxy.close()
        sweep_dropped_connections()


def test_a_redis_that_goes_away_gives_503s_then_the_gateway_recovers(module_fleet: Any) -> None:
    # Given a gateway that reaches Redis through a proxy the test can cut
    url = module_fleet.env["WARREN_REDIS_URL"]
    parts = urlsplit(url)
    proxy = CuttableProxy((parts.hostname or "127.0.0.1", parts.port or 6379))
    redis_url = urlunsplit(parts._replace(netloc=f"127.0.0.1:{proxy.port}"))
    gw = GatewayKit(module_fleet, None, env={"WARREN_REDIS_URL": redis_url})
    try:
        name = unique_name("redis-out")
        gw.create(name)
        lam = gw.client()
        assert lam.invoke(FunctionName=name)["StatusCode"] == 200
        # When Redis is cut, then API calls get a 503 naming Redis, and /readyz says so
        proxy.cut()
        time.sleep(1.1)  # past the key and spec caches
        with pytest.raises(ClientError) as info:
            lam.list_functions()
        assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert "Redis" in info.value.response["Error"]["Message"]
        status, body = ready(gw.endpoint)
        assert status == 503 and body["redis"] != "ok"
        # When it is back, the same gateway serves again
        proxy.restore()
        module_fleet.wait_for(lambda: ready(gw.endpoint)[0] == 200, what="Redis again")
        assert lam.invoke(FunctionName=name)["StatusCode"] == 200
    finally:
        gw.close()
        module_fleet.stop(gw.proc)
        proxy.close()
        sweep_dropped_connections()
