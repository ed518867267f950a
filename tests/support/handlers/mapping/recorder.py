"""A Lambda handler that records every record it receives in Redis (`<key>` hash: n -> times seen).

Reads Kinesis-shaped (`Records[].kinesis.data`), RabbitMQ-shaped (`rmqMessagesByQueue`) and
MQTT events (the payload, or a list of them) whose data is `{"n": N}`, DynamoDB records of rows
with a column n, as a user's handler would, and S3 events (by decoded key).
Configured by the environment: RECORDER_REDIS_URL and RECORDER_KEY; RECORDER_SLEEP_S slows
each batch down; RECORDER_ORDER_KEY, when set, also appends each stream record's n to the list
`<RECORDER_ORDER_KEY>:<partitionKey>` in the order the handler saw them. The Redis is one of
the test's own (support/own_redis.py): the fleet's is behind the sandbox's network wall.
"""

from __future__ import annotations

import base64
import json
import os
import time
from urllib.parse import unquote_plus

import redis

_client = None


def _redis():
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ["RECORDER_REDIS_URL"])
    return _client


def numbers(event):
    if isinstance(event, list):  # MQTT, batch size > 1: the payloads
        return [p["n"] for p in event]
    if "n" in event:  # MQTT, batch size 1: the payload itself
        return [event["n"]]
    if "Records" in event and event["Records"] and "dynamodb" in event["Records"][0]:
        return [int(r["dynamodb"]["NewImage"]["n"]["N"]) for r in event["Records"]]
    if "Records" in event and event["Records"] and "s3" in event["Records"][0]:
        return [unquote_plus(r["s3"]["object"]["key"]) for r in event["Records"]]
    if "Records" in event:
        encoded = [r["kinesis"]["data"] for r in event["Records"]]
    else:
        encoded = [m["data"] for ms in event["rmqMessagesByQueue"].values() for m in ms]
    return [json.loads(base64.b64decode(e))["n"] for e in encoded]


def handler(event, context):
    seen = numbers(event)
    pipe = _redis().pipeline(transaction=False)
    for n in seen:
        pipe.hincrby(os.environ["RECORDER_KEY"], str(n), 1)
    order_key = os.environ.get("RECORDER_ORDER_KEY")
    if order_key and "Records" in event:
        for record, n in zip(event["Records"], seen, strict=True):
            if "kinesis" in record:
                pipe.rpush(f"{order_key}:{record['kinesis']['partitionKey']}", n)
            elif "dynamodb" in record:
                pipe.rpush(f"{order_key}:table", n)
    elif order_key:
        pipe.rpush(f"{order_key}:mqtt", *seen)
    pipe.execute()
    time.sleep(float(os.environ.get("RECORDER_SLEEP_S", "0")))
    return {"batchItemFailures": []}
