"""Handlers for the fault suite: each run leaves lines in a file of its own (not the fleet's
stores), so the checker counts runs, and their overlap, even when the fleet loses track."""

import os
import socket
import time


def _write(text):
    """Append to the runs file: through the test's listener when there is one (the sandbox
    walls keep the host's files read-only), else directly."""
    address = os.environ.get("RUNS_ADDR")
    if not address:
        with open(os.environ["RUNS_FILE"], "a") as runs:
            runs.write(text)
        return
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(os.path.basename(os.environ["RUNS_FILE"]).encode() + b"\n" + text.encode())
        conn.shutdown(socket.SHUT_WR)
        conn.recv(16)  # written once the listener answers


def _note(context, event, what):
    _write(f"{context.aws_request_id} {event.get('n')} {what} {time.time():.3f}\n")


def record(event, context):
    _note(context, event, "S")
    time.sleep(float(event.get("sleep", 0.05)))
    _note(context, event, "E")
    return {"n": event.get("n")}


def fail(event, context):
    _note(context, event, "S")
    raise RuntimeError(f"fails on purpose: {event.get('n')}")


def batch(event, context):
    """A RabbitMQ or stream batch: one line per message, keyed by the message's own `n`."""
    import base64
    import json

    lines = []
    datas = [m["data"] for ms in event.get("rmqMessagesByQueue", {}).values() for m in ms]
    datas += [r["kinesis"]["data"] for r in event.get("Records", [])]  # a Redis stream's
    for data in datas:
        n = json.loads(base64.b64decode(data))["n"]
        lines.append(f"msg-{n} {n} S {time.time():.3f}\n")
    if lines:
        _write("".join(lines))
    time.sleep(0.2)  # 30 batches take 6 s: long enough for a fault to land mid-way
    return {}
