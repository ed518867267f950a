"""The sync lane: sync requests on a transient classic queue per pool, beside the durable work
queue, and how a worker's slots share what reaches a busy one (docs/fleet.md)."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from dataclasses import replace
from typing import Any

import pytest
from support.fleet import Fleet

from warren.client import Client
from warren.errors import Unavailable


def queue_rows(fleet: Fleet) -> dict[str, dict[str, str]]:
    out = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "name", "durable", "type", "consumers"],
        capture_output=True, text=True, check=True,
    ).stdout
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0].startswith(fleet.prefix + "."):
            rows[parts[0]] = {"durable": parts[1], "type": parts[2]}
    return rows


def test_sync_requests_take_a_transient_classic_lane_while_work_stays_quorum(fleet: Fleet) -> None:
    # Given a worker with two slots, and a function called once
    fleet.function("echo")
    fleet.worker(slots=2)
    assert fleet.client.invoke("echo", {"n": 1}).payload["event"] == {"n": 1}
    # Then the pool has a sync lane: classic and not durable, whatever WARREN_QUEUE_TYPE says,
    # and the work queue stays a durable quorum queue; each slot consumes both
    rows = queue_rows(fleet)
    lane, work = rows[fleet.keys.sync_queue()], rows[fleet.keys.work_queue()]
    assert (lane["type"], lane["durable"]) == ("classic", "false"), rows
    assert (work["type"], work["durable"]) == ("quorum", "true"), rows
    for queue in (fleet.keys.sync_queue(), fleet.keys.work_queue()):
        fleet.wait_for(lambda q=queue: fleet.consumers(q) == 2, what=f"two consumers of {queue}")


def test_a_sync_call_reaching_a_busy_slot_runs_on_the_free_one(fleet: Fleet) -> None:
    # Given a worker with two slots, one of them held by a 6-second run
    fleet.function("span", handler="app.span", timeout_s=30)
    fleet.function("echo")
    fleet.worker(slots=2)
    fleet.client.invoke("echo", {"warm": True})
    slow: dict[str, Any] = {}

    def hold() -> None:
        with Client.from_settings(fleet.settings) as other:
            slow["result"] = other.invoke("span", {"sleep": 6})
            slow["done_at"] = time.time()

    holder = threading.Thread(target=hold)
    holder.start()
    fleet.wait_for(lambda: any(w.get("busy") == "1" for w in fleet.worker_status()),
                   what="the slow run to start")
    # When sync calls come meanwhile (both slots' sync consumers get some in turn)
    answers = [fleet.client.invoke("echo", {"n": n}) for n in range(12)]
    finished_at = time.time()
    holder.join(timeout=30)
    # Then each is answered, and all of them before the slow run ended: none waited behind it
    assert [a.payload["event"] for a in answers] == [{"n": n} for n in range(12)]
    assert slow["result"].status_code == 200
    assert finished_at < slow["done_at"], (finished_at, slow["done_at"])


def test_a_request_with_no_lane_to_take_it_fails_clearly_and_the_next_call_works(
    fleet: Fleet,
) -> None:
    # Given a client that declared its pool's lane, and a worker
    fleet.function("echo")
    worker = fleet.worker(slots=1)
    on_amqp = replace(fleet.settings, sync_lane="amqp", sync_reply="amqp")
    with Client.from_settings(on_amqp) as client:
        client.invoke("echo", {"n": 0})
        # When the lane goes (as a broker restart or a lost node takes it), its worker too
        fleet.stop(worker, signal.SIGKILL)
        fleet._backbone().delete_queue(fleet.keys.sync_queue())
        # Then the next call fails at once with a clear error (RabbitMQ returned the request)
        started = time.monotonic()
        with pytest.raises(Unavailable, match="no queue for echo's request"):
            client.invoke("echo", {"n": 1})
        assert time.monotonic() - started < 5
        # And with a worker again, the same client declares the lane anew and calls as before
        fleet.worker(slots=1)
        assert client.invoke("echo", {"n": 2}).payload["event"] == {"n": 2}


def _close_connections_of(pid: int) -> int:
    """Close, through rabbitmqctl, every broker connection of process `pid`; how many."""
    sockets = subprocess.run(["ss", "-tnpH", "state", "established", "dport", "= :5672"],
                             capture_output=True, text=True, check=True).stdout
    ports = {line.split()[2].rsplit(":", 1)[1] for line in sockets.splitlines()
             if f"pid={pid}," in line}
    listing = subprocess.run(["rabbitmqctl", "-q", "list_connections", "pid", "peer_port"],
                             capture_output=True, text=True, check=True).stdout
    closed = 0
    for line in listing.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1] in ports:
            subprocess.run(["rabbitmqctl", "-q", "close_connection", parts[0], "test cut"],
                           capture_output=True, check=True)
            closed += 1
    return closed


def test_a_result_on_redis_reaches_its_caller_though_the_workers_connection_died(
    fleet: Fleet,
) -> None:
    # Given a sync call on RabbitMQ's lane (its result on a Redis list) running on a worker
    fleet.function("span", handler="app.span", timeout_s=30)
    worker = fleet.worker(slots=1)
    got: dict[str, Any] = {}
    on_amqp = Client.from_settings(replace(fleet.settings, sync_lane="amqp", sync_reply="redis"))
    caller = threading.Thread(
        target=lambda: got.update(result=on_amqp.invoke("span", {"sleep": 8}))
    )
    caller.start()
    fleet.wait_for(lambda: any(w.get("busy") == "1" for w in fleet.worker_status()),
                   what="the run to start")
    # When the worker's broker connections are closed under it mid-run (rabbitmqctl takes
    # a second or two: the run is long enough to be still going once it is done)
    assert _close_connections_of(worker.pid) >= 1
    cut_at = time.time()
    caller.join(timeout=30)
    on_amqp.close()
    # Then the caller gets the result of that very run (pushed to Redis all the same), not
    # of a second one the broker's redelivery started after the cut
    result = got["result"]
    assert result.status_code == 200 and result.function_error is None
    assert result.payload["start"] < cut_at < result.payload["end"], (result.payload, cut_at)
