"""Handlers the gateway tests deploy through the Lambda API (written as Lambda users write them)."""

import base64
import json
import time


def echo(event, context):
    print("echo", json.dumps(event))
    cc = context.client_context
    return {
        "event": event,
        "version": context.function_version,
        "request_id": context.aws_request_id,
        "client_context": None if cc is None else {
            "custom": cc.custom,
            "env": cc.env,
            "app_title": cc.client.app_title if cc.client else None,
        },
    }


def fail(event, context):
    print("about to fail")
    raise ValueError("always fails")


def slow(event, context):
    time.sleep(float(event.get("sleep", 1)))
    return {"slept": event.get("sleep", 1)}


def chatty(event, context):
    for n in range(2000):
        print(f"line {n:05d} " + "x" * 40)
    return "done"


def http(event, context):
    """A function URL handler: the event back, with a status, headers and cookies of its own."""
    return {
        "statusCode": int(event.get("queryStringParameters", {}).get("status", 200)),
        "headers": {"content-type": "application/json", "x-handler": "http"},
        "cookies": ["a=1; Path=/", "b=2"],
        "body": json.dumps(event),
    }


def plain(event, context):
    return {"hello": "world"}


def binary(event, context):
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/octet-stream"},
        "body": base64.b64encode(bytes(range(256))).decode(),
        "isBase64Encoded": True,
    }
