"""Handlers the fleet tests deploy (written as Lambda users write them)."""

import os
import time


def echo(event, context):
    print("echo", event)
    return {"event": event, "version": os.environ.get("AWS_LAMBDA_FUNCTION_VERSION")}


def fail(event, context):
    print("about to fail")
    raise ValueError(f"always fails: {event}")


def span(event, context):
    """Sleep `event["sleep"]` seconds and report when it ran, for overlap measurements."""
    start = time.time()
    time.sleep(float(event.get("sleep", 0.2)))
    return {"start": start, "end": time.time(), "n": event.get("n"), "pid": os.getpid()}


def trivial(event, context):
    return event


def maybe_die(event, context):
    """Exit the runtime abruptly when asked, else report which process ran."""
    if event.get("die"):
        os._exit(3)
    return {"pid": os.getpid()}
