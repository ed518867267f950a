"""A plain Lambda handler, as a user would write it for AWS."""

import json
import os
import time

STARTED = time.time()  # module-level code: runs once per sandbox (init)


def handler(event, context):
    name = event.get("name", "world")
    print(f"hello handler called for {name}")
    return {
        "message": f"Hello, {name}!",
        "request_id": context.aws_request_id,
        "function": context.function_name,
        "memory_mb": int(context.memory_limit_in_mb),
        "remaining_ms": context.get_remaining_time_in_millis(),
        "region": os.environ.get("AWS_REGION"),
        "warm_for_s": round(time.time() - STARTED, 3),
        "echo": json.loads(json.dumps(event)),
    }
