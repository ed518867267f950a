"""Decodes Kinesis-shaped records and reports the ones it cannot process as batchItemFailures.

Each record's `kinesis.data` is base64 of a JSON order such as {"order": 7, "qty": 2,
"price": 9.5}; a record that is not such an order is reported by its sequence number, so
that only it is retried (the mapping needs --report-item-failures).
"""

import base64
import json


def process(order):
    total = order["qty"] * order["price"]
    if total < 0:
        raise ValueError(f"negative total {total}")
    return total


def handler(event, context):
    failures = []
    for record in event["Records"]:
        sequence = record["kinesis"]["sequenceNumber"]
        try:
            order = json.loads(base64.b64decode(record["kinesis"]["data"]))
            total = process(order)
        except Exception as exc:
            print(f"record {sequence} failed: {type(exc).__name__}: {exc}")
            failures.append({"itemIdentifier": sequence})
            continue
        print(f"order {order['order']} (partition {record['kinesis']['partitionKey']}): "
              f"total {total:.2f}")
    return {"batchItemFailures": failures}
