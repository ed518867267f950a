"""Reads the messages of a RabbitMQ event (Lambda's `aws:rmq` shape), queue by queue."""

import base64
import json


def handler(event, context):
    count = 0
    for queue, messages in event["rmqMessagesByQueue"].items():
        name, _, vhost = queue.partition("::")
        for message in messages:
            body = base64.b64decode(message["data"])
            props = message["basicProperties"]
            try:
                shown = json.loads(body)
            except ValueError:
                shown = body.decode("utf-8", "replace")
            redelivered = " (redelivered)" if message["redelivered"] else ""
            print(f"{name}@{vhost} {props.get('messageId') or '-'}: {shown}{redelivered}")
            count += 1
    return {"messages": count}
