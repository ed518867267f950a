"""Reads every object an S3 event names, as a Lambda handler for S3 notifications does.

Keys arrive URL-encoded (a space is "+"), so they are decoded with unquote_plus before use.
The S3 client takes its endpoint and keys from the usual places (on Lambda: the execution
role); for an S3-compatible store set S3_ENDPOINT_URL, S3_ACCESS_KEY_ID, S3_SECRET_ACCESS_KEY.
"""

import os
import urllib.parse

import boto3

s3 = boto3.client(
    "s3",
    endpoint_url=os.environ.get("S3_ENDPOINT_URL"),
    aws_access_key_id=os.environ.get("S3_ACCESS_KEY_ID"),
    aws_secret_access_key=os.environ.get("S3_SECRET_ACCESS_KEY"),
)


def handler(event, context):
    results = []
    for record in event["Records"]:
        bucket = record["s3"]["bucket"]["name"]
        key = urllib.parse.unquote_plus(record["s3"]["object"]["key"], encoding="utf-8")
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        words = len(body.split())
        print(f"s3://{bucket}/{key}: {len(body)} bytes, {words} words ({record['eventName']})")
        results.append({"key": key, "bytes": len(body), "words": words})
    return {"objects": results}
