"""A stream entry in Kinesis' record shape, as JSON: built from a per-mapping template."""

from __future__ import annotations

import orjson


def kinesis_template(role: str, region: str, arn: str) -> bytes:
    """One Kinesis record as JSON with %s holes for partition key, id, data, arrival, id; the
    per-mapping constants are escaped once here."""
    return (
        b'{"kinesis":{"kinesisSchemaVersion":"1.0","partitionKey":%s,"sequenceNumber":"%s",'
        b'"data":"%s","approximateArrivalTimestamp":%s},"eventSource":"aws:kinesis",'
        b'"eventVersion":"1.0","eventID":"shardId-000000000000:%s",'
        b'"eventName":"aws:kinesis:record","invokeIdentityArn":' + orjson.dumps(role)
        + b',"awsRegion":' + orjson.dumps(region) + b',"eventSourceARN":' + orjson.dumps(arn)
        + b"}"
    )
