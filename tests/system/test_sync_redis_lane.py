"""The Redis sync lane (warren/store/synclane.py, workers/lane.py): requests on a list per
pool, taken by idle slots, put back when their worker dies, dropped when their caller left."""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import pytest
from support.fleet import Fleet

from warren.aws import new_request_id
from warren.errors import NoLiveWorker
from warren.invocation import REQUEST_RESPONSE, Invocation, encode_single
from warren.store.synclane import envelope


def taken_lists(fleet: Fleet) -> dict[bytes, int]:
    pattern = fleet.keys.sync_taken("default", "*")
    return {key: int(fleet.redis.llen(key)) for key in fleet.redis.scan_iter(pattern)}


def takers(fleet: Fleet) -> set[bytes]:
    return set(fleet.redis.smembers(fleet.keys.sync_takers("default")))


def test_sync_requests_cross_on_the_pools_redis_list_and_nothing_is_left_behind(
    fleet: Fleet,
) -> None:
    # Given a worker with two slots
    fleet.function("echo")
    worker = fleet.worker(slots=2)
    # When a client (on the Redis lane, the default) makes sync calls
    answers = [fleet.client.invoke("echo", {"n": n}) for n in range(20)]
    # Then each is answered, and the lane, the taken lists and the reply lists are empty
    assert [a.payload["event"] for a in answers] == [{"n": n} for n in range(20)]
    assert fleet.redis.llen(fleet.keys.sync_lane()) == 0
    assert sum(taken_lists(fleet).values()) == 0
    assert list(fleet.redis.scan_iter(f"{fleet.prefix}:reply:*")) == []
    # And the worker's two slots are its pool's takers until it stops, when they leave
    worker_id = fleet.worker_status()[0]["id"]
    assert takers(fleet) == {f"{worker_id}.0".encode(), f"{worker_id}.1".encode()}
    started = time.monotonic()
    assert fleet.stop(worker) == 0
    assert time.monotonic() - started < 10, "a draining worker kept waiting on the lane"
    assert takers(fleet) == set()


def test_a_request_whose_worker_is_killed_mid_run_runs_on_another_and_its_caller_gets_it(
    fleet: Fleet,
) -> None:
    # Given a sync call running on the only worker
    fleet.function("span", handler="app.span", timeout_s=30)
    first = fleet.worker(slots=1)
    got: dict[str, Any] = {}
    caller = threading.Thread(
        target=lambda: got.update(result=fleet.client.invoke("span", {"sleep": 3, "n": 7}))
    )
    caller.start()
    fleet.wait_for(lambda: any(w.get("busy") == "1" for w in fleet.worker_status()),
                   what="the run to start")
    first_id = fleet.worker_status()[0]["id"]
    assert taken_lists(fleet) == {fleet.keys.sync_taken("default", f"{first_id}.0").encode(): 1}
    # When a second worker comes up and the first is killed -9 mid-run
    fleet.worker(slots=1)
    fleet.stop(first, signal.SIGKILL)
    killed_at = time.time()
    caller.join(timeout=60)
    # Then, once the dead worker's heartbeat is gone, the live one puts the request back on
    # the lane and runs it, and the caller gets that run's result
    result = got["result"]
    assert result.status_code == 200 and result.function_error is None, result
    assert result.payload["n"] == 7 and result.payload["start"] > killed_at, result.payload
    # And nothing of the dead worker is left on the lane
    assert sum(taken_lists(fleet).values()) == 0
    assert not any(t.startswith(first_id.encode()) for t in takers(fleet))


def test_a_request_whose_caller_gave_up_and_one_that_cannot_be_read_are_dropped_unrun(
    fleet: Fleet,
) -> None:
    # Given, on the pool's lane before any worker runs, a request whose caller's deadline has
    # passed and one that is not a request at all
    spec = fleet.function("echo")
    stale_id = new_request_id()
    stale = Invocation(stale_id, spec, b'{"stale": true}', REQUEST_RESPONSE)
    lane = fleet.keys.sync_lane()
    fleet.redis.lpush(lane, envelope(*encode_single(stale), time.time() - 1))
    fleet.redis.lpush(lane, b"not a request")
    # When a worker starts and a caller makes a call behind them
    fleet.worker(slots=1)
    answer = fleet.client.invoke("echo", {"n": 1})
    # Then the call is answered, and neither of the others ran or left anything behind
    assert answer.payload["event"] == {"n": 1}
    assert fleet.redis.llen(lane) == 0
    assert sum(taken_lists(fleet).values()) == 0
    assert not fleet.redis.exists(fleet.keys.reply(stale_id))
    ran = [entry for entry in fleet.client_logs("echo") if stale_id in str(entry)]
    assert ran == []
    logs = fleet.logs()
    assert "dropping sync request" in logs and "dropping a malformed sync lane request" in logs


def test_a_call_no_live_worker_answered_takes_its_request_back_and_never_runs_later(
    fleet: Fleet,
) -> None:
    # Given a function whose pool has no worker
    fleet.function("echo", pool="lonely")
    # When a sync call gives up on it (no heartbeat in the pool: about 2 s)
    started = time.monotonic()
    with pytest.raises(NoLiveWorker, match="warren worker --pool lonely"):
        fleet.client.invoke("echo", {"n": 1})
    assert time.monotonic() - started < 10
    # Then its request is off the lane, so a worker that comes up later does not run it
    assert fleet.redis.llen(fleet.keys.sync_lane("lonely")) == 0
    fleet.worker(slots=1, pool="lonely")
    assert fleet.client.invoke("echo", {"n": 2}).payload["event"] == {"n": 2}
    logged = [e.text for e in fleet.client_logs("echo")]
    assert any("{'n': 2}" in text for text in logged), logged  # what a run leaves
    assert not any("{'n': 1}" in text for text in logged), logged


def test_a_call_begun_apart_is_answered_later_and_an_abandoned_one_leaves_no_stale_reply(
    fleet: Fleet,
) -> None:
    # Given a worker and a dispatcher whose calls can be begun and awaited apart (what a
    # stream mapping's poller uses, router/batching/inline.py)
    fleet.function("span", handler="app.span", timeout_s=30)
    fleet.worker(slots=2)
    dispatcher = fleet.client.invoker
    assert dispatcher.defers_calls
    # When a call is begun, it returns before its reply, which comes when awaited
    begun = dispatcher.start("span", {"sleep": 0.5, "n": 1})
    assert begun.result(0) is None
    result = begun.result(None)
    assert result is not None and result.status_code == 200, result
    assert result.payload["n"] == 1
    # And when a begun call is abandoned mid-run, the dispatcher's next call gets its own
    # reply, not the abandoned call's (the connection it waited on is dropped)
    abandoned = dispatcher.start("span", {"sleep": 1.0, "n": 2})
    assert abandoned.result(0.1) is None
    abandoned.abandon()
    after = dispatcher.invoke("span", {"sleep": 0, "n": 3})
    assert after.payload["n"] == 3, after.payload
    time.sleep(1.5)  # the abandoned run ends and replies to a list nobody pops
    again = dispatcher.invoke("span", {"sleep": 0, "n": 4})
    assert again.payload["n"] == 4, again.payload
