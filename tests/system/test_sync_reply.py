"""Sync results on a Redis list (WARREN_SYNC_REPLY=redis, the default) or by direct reply-to."""

from __future__ import annotations

import base64
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
from support.fleet import Fleet

from warren import invocation as wire
from warren.aws import new_request_id
from warren.client import Client
from warren.errors import ConfigError
from warren.keys import REPLY_LIST_SCHEME, Keys
from warren.settings import Settings
from workers.completion import REPLY_KEEP_S


@pytest.fixture
def redis_client(fleet: Fleet) -> Iterator[Client]:
    client = Client.from_settings(replace(fleet.settings, sync_reply="redis"))
    yield client
    client.close()


def reply_keys(fleet: Fleet) -> list[bytes]:
    return list(fleet.redis.scan_iter(f"{fleet.prefix}:reply:*"))


def test_sync_calls_answer_through_redis_with_errors_and_log_tails(fleet, redis_client):
    # Given a worker, and a client set to take its sync results from Redis
    fleet.function("echo", handler="app.echo")
    fleet.function("fail", handler="app.fail")
    fleet.worker(slots=1)
    # When it calls a function that answers, one that fails, and one with --log-tail
    answers = [redis_client.invoke("echo", {"n": n}) for n in range(20)]
    failed = redis_client.invoke("fail", {"bad": True})
    tailed = redis_client.invoke("echo", {"tail": 1}, log_tail=True)
    # Then each result is the one Lambda gives, the same as through direct reply-to
    assert [a.payload["event"] for a in answers] == [{"n": n} for n in range(20)]
    assert all(a.status_code == 200 and a.function_error is None for a in answers)
    assert failed.function_error == "Unhandled"
    assert failed.payload["errorType"] == "ValueError"
    logs = base64.b64decode(tailed.log_result or "").decode()
    assert f"START RequestId: {tailed.request_id}" in logs and "echo {'tail': 1}" in logs
    for reply in ("amqp", "redis"):  # RabbitMQ's sync lane, either reply, same worker
        on_amqp = replace(fleet.settings, sync_lane="amqp", sync_reply=reply)
        with Client.from_settings(on_amqp) as other:
            assert other.invoke("echo", {"n": 99}).payload["event"] == {"n": 99}
    # And no reply list is left behind once its caller has taken it
    assert reply_keys(fleet) == []


def test_a_reply_nobody_takes_expires_and_a_foreign_list_is_never_written(fleet):
    spec = fleet.function("echo", handler="app.echo", timeout_s=5)
    fleet.worker(slots=1)
    queue = fleet.keys.sync_queue("default")
    orphan, foreign = new_request_id(), new_request_id()
    own_key = Keys(fleet.prefix).reply(orphan)
    other_key = f"other-{fleet.prefix}:reply:{foreign}"
    backbone = fleet._backbone()
    backbone.declare("default")  # the worker's slot may not have declared it yet
    for request_id, key in ((orphan, own_key), (foreign, other_key)):
        run = wire.Invocation(request_id, spec, b'{"x": 1}', wire.REQUEST_RESPONSE)
        body = wire.encode_chunk([run])
        backbone.publish(queue, body, reply_to=REPLY_LIST_SCHEME + key, correlation_id=request_id,
                         confirm=False)
    # The caller gave up: its result waits on the list, kept only a minute past its wait
    fleet.wait_for(lambda: fleet.redis.exists(own_key), what="the orphaned reply")
    assert 0 < fleet.redis.ttl(own_key) <= spec.timeout_s + REPLY_KEEP_S
    result = wire.InvocationResult.decode(fleet.redis.lpop(own_key))
    assert result.request_id == orphan and result.payload["event"] == {"x": 1}
    # A reply_to naming a list outside this fleet's reply keys runs the function, and the
    # worker writes nothing there (it logs why) and goes on
    fleet.wait_for(lambda: fleet.queue_depth(queue) == 0, what="both requests to be taken")
    time.sleep(0.5)
    assert not fleet.redis.exists(other_key)
    assert fleet.client.invoke("echo", {"after": 1}).payload["event"] == {"after": 1}
    assert "not a reply list of this fleet" in fleet.logs()


def test_the_reply_list_must_be_one_of_this_fleets() -> None:
    key = Keys("p").reply("abc")
    assert wire.reply_list(REPLY_LIST_SCHEME + key, "p") == key
    assert wire.reply_list(REPLY_LIST_SCHEME + key, "other") is None
    assert wire.reply_list(REPLY_LIST_SCHEME + "p:reply:", "p") is None
    assert wire.reply_list(REPLY_LIST_SCHEME + "p:reply:" + "x" * 65, "p") is None
    assert wire.reply_list("amq.rabbitmq.reply-to", "p") is None
    assert wire.reply_list(None, "p") is None


@pytest.mark.parametrize("value, expected", [("redis", "redis"), (" REDIS ", "redis"),
                                             ("amqp", "amqp"), ("", "redis")])
def test_sync_reply_setting_accepts_amqp_and_redis(value: str, expected: str) -> None:
    assert Settings.from_environ({"WARREN_SYNC_REPLY": value}).sync_reply == expected
    assert Settings.from_environ({}).sync_reply == "redis"


def test_a_bad_sync_reply_setting_is_one_clear_error(fleet: Fleet) -> None:
    with pytest.raises(ConfigError, match="WARREN_SYNC_REPLY must be one of amqp, redis"):
        Settings.from_environ({"WARREN_SYNC_REPLY": "kafka"})
    out = subprocess.run([sys.executable, "-m", "warren", "invoke", "echo"],
                         env={**fleet.env, "WARREN_SYNC_REPLY": "kafka"},
                         capture_output=True, timeout=60, check=False)
    assert out.returncode != 0
    assert b"WARREN_SYNC_REPLY must be one of amqp, redis, got 'kafka'" in out.stderr
    assert b"Traceback" not in out.stderr


def test_the_pollers_batch_invokes_take_redis_replies_unless_told_otherwise() -> None:
    assert Settings.from_environ({}).mapping_sync_reply == "redis"
    assert Settings.from_environ({"WARREN_MAPPING_SYNC_REPLY": "AMQP"}).mapping_sync_reply == "amqp"
    with pytest.raises(ConfigError, match="WARREN_MAPPING_SYNC_REPLY must be one of amqp, redis"):
        Settings.from_environ({"WARREN_MAPPING_SYNC_REPLY": "both"})
