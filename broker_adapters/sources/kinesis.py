"""A stream entry in Kinesis' record shape, kept as JSON: built once from a per-mapping template."""

from __future__ import annotations

from typing import Any

import orjson

from broker_adapters.sources.base import SourceRecord


class StreamRecord(SourceRecord):
    """A stream record that carries its Kinesis record as JSON (`json`) and its partition key.

    The fleet path sends `json` as it is; the `record` dict is parsed from it only when
    something asks for it (an in-process handler, a failure record, a test), so it is always
    exactly what the JSON says.
    """

    json: bytes
    partition: str

    def __getattr__(self, name: str) -> Any:
        if name != "record":
            raise AttributeError(name)
        record = orjson.loads(self.__dict__["json"])
        self.__dict__["record"] = record
        return record


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
