"""The S3 bucket source against a real S3 endpoint (moto's server): shape, checkpoints, polling."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote_plus

import boto3
import orjson
import pytest
import redis
from botocore.config import Config

from broker_adapters.sources import open_source
from broker_adapters.sources.bucket import BucketLocation, BucketSource
from warren.errors import InvalidParameter, NotFound, StoreUnavailable
from warren.mapping import StartPosition
from warren.source import Source, SourceIdentity

ODD_KEYS = ["in/red flower.jpg", "in/a+b=c.txt", "in/ünï cødé/日本.txt", "in/x@y@z", "in/100%.csv"]


@pytest.fixture
def store(redis_url) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def s3(s3_endpoint):
    return boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                        config=Config(s3={"addressing_style": "path"}))


@pytest.fixture
def bucket(s3, unique) -> Iterator[str]:
    name = f"warren-src-{unique}"
    s3.create_bucket(Bucket=name)
    yield name
    keys = [o["Key"] for p in s3.get_paginator("list_objects_v2").paginate(Bucket=name)
            for o in p.get("Contents", [])]
    for i in range(0, len(keys), 1000):
        s3.delete_objects(Bucket=name, Delete={"Objects": [{"Key": k} for k in keys[i:i + 1000]]})
    s3.delete_bucket(Bucket=name)


@pytest.fixture
def prefix(store, unique) -> Iterator[str]:
    name = f"t-{unique}"
    yield name
    for key in store.scan_iter(f"{name}:*"):
        store.delete(key)


def _open(s3_endpoint, store, bucket, prefix, unique, path="in/", query="", **kw) -> Source:
    return open_source(
        f"s3://{bucket}/{path}?endpoint={s3_endpoint}{query}",
        mapping_id=kw.pop("mapping_id", f"m-{unique}"),
        redis=store,
        prefix=prefix,
        options={"consumer": "c1", "poll_interval_s": 0.2, **kw.pop("options", {})},
        **kw,
    )


def _put_many(s3, bucket, keys, body=b"x") -> None:
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=bucket, Key=k, Body=body), keys))


def _drain(source: Source, commit: bool = True, wait_s: float = 0.5) -> list:
    out = []
    while batch := source.read(100, wait_s):
        out += batch
        if commit:
            source.commit(batch)
    return out


def test_records_have_the_s3_notification_shape_with_keys_encoded_as_s3_does(
    s3_endpoint, store, s3, bucket, prefix, unique
):
    for key in ODD_KEYS:
        s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
    s3.put_object(Bucket=bucket, Key="elsewhere/skip.txt", Body=b"no")
    source = _open(s3_endpoint, store, bucket, prefix, unique)
    try:
        records = _drain(source, commit=False)
        assert sorted(unquote_plus(r.record["s3"]["object"]["key"]) for r in records) == sorted(
            ODD_KEYS
        )
        by_key = {unquote_plus(r.record["s3"]["object"]["key"]): r for r in records}
        flower = by_key["in/red flower.jpg"]
        assert flower.record["s3"]["object"]["key"] == "in/red+flower.jpg"
        assert by_key["in/a+b=c.txt"].record["s3"]["object"]["key"] == "in/a%2Bb%3Dc.txt"
        head = s3.head_object(Bucket=bucket, Key="in/red flower.jpg")
        rec = flower.record
        assert rec["eventVersion"] == "2.1" and rec["eventSource"] == "aws:s3"
        assert rec["eventName"] == "ObjectCreated:Put"
        assert rec["eventTime"].endswith("Z")
        assert rec["s3"]["bucket"] == {
            "name": bucket, "ownerIdentity": {"principalId": "warren"},
            "arn": f"arn:aws:s3:::{bucket}",
        }
        obj = rec["s3"]["object"]
        assert obj["size"] == len(b"in/red flower.jpg")
        assert obj["eTag"] == head["ETag"].strip('"')
        assert int(obj["sequencer"], 16) > 0
        assert flower.id == f"in/red flower.jpg@{obj['eTag']}"
        assert flower.data == orjson.dumps(rec) and flower.size == len(flower.data)
        assert source.event(records[:2]) == {"Records": [r.record for r in records[:2]]}
        assert source.kind == "s3" and source.ordered is False
    finally:
        source.close()


@pytest.mark.slow
def test_a_thousand_objects_arrive_once_each(s3_endpoint, store, s3, bucket, prefix, unique):
    # moto's server writes ~50-100 objects/s on this machine: 1,000 here, not 10,000.
    keys = [f"in/{i:05d}.json" for i in range(1000)]
    _put_many(s3, bucket, keys)
    source = _open(s3_endpoint, store, bucket, prefix, unique)
    try:
        records = _drain(source)
        assert sorted(r.id.rpartition("@")[0] for r in records) == keys
    finally:
        source.close()


def test_an_object_overwritten_in_place_is_offered_again(
    s3_endpoint, store, s3, bucket, prefix, unique
):
    s3.put_object(Bucket=bucket, Key="in/doc.txt", Body=b"v1")
    source = _open(s3_endpoint, store, bucket, prefix, unique)
    try:
        [first] = _drain(source)
        time.sleep(1.1)  # a new LastModified second, as on S3
        s3.put_object(Bucket=bucket, Key="in/doc.txt", Body=b"version two")
        [second] = source.read(10, 5.0)
        source.commit([second])
        assert second.id != first.id
        assert second.record["s3"]["object"]["size"] == len(b"version two")
        assert second.record["s3"]["object"]["sequencer"] > first.record["s3"]["object"][
            "sequencer"
        ]
        assert source.read(10, 0.6) == []
    finally:
        source.close()


def test_a_restart_neither_repeats_committed_objects_nor_misses_any(
    s3_endpoint, store, s3, bucket, prefix, unique
):
    keys = [f"in/{i:03d}" for i in range(60)]
    _put_many(s3, bucket, keys)
    source = _open(s3_endpoint, store, bucket, prefix, unique, options={"page_size": 25})
    done = []
    for _ in range(2):
        batch = source.read(20, 5.0)
        source.commit(batch)
        done += batch
    lost = source.read(10, 5.0)  # handed on, never committed: the poller dies here
    source.close()
    _put_many(s3, bucket, ["in/zz-new", "in/000-early"])  # written while nobody polls

    restarted = _open(s3_endpoint, store, bucket, prefix, unique, options={"page_size": 25})
    try:
        rest = _drain(restarted)
        got = [r.id.rpartition("@")[0] for r in done + rest]
        assert sorted(got) == sorted(keys + ["in/zz-new", "in/000-early"])
        assert {r.id for r in lost} <= {r.id for r in rest}
    finally:
        restarted.close()


def test_retry_offers_the_object_again(s3_endpoint, store, s3, bucket, prefix, unique):
    _put_many(s3, bucket, ["in/a", "in/b", "in/c"])
    source = _open(s3_endpoint, store, bucket, prefix, unique)
    try:
        batch = source.read(10, 5.0)
        source.commit([r for r in batch if not r.id.startswith("in/b@")])
        source.retry([r for r in batch if r.id.startswith("in/b@")])
        again = source.read(10, 1.0)
        assert [r.id.rpartition("@")[0] for r in again] == ["in/b"]
        source.commit(again)
        assert source.read(10, 0.6) == []
    finally:
        source.close()


def test_prefix_and_suffix_select_the_objects(s3_endpoint, store, s3, bucket, prefix, unique):
    _put_many(s3, bucket, ["in/a.jpg", "in/b.png", "in/sub/c.jpg", "out/d.jpg"])
    source = _open(s3_endpoint, store, bucket, prefix, unique, query="&suffix=.jpg")
    try:
        assert sorted(r.id.rpartition("@")[0] for r in _drain(source)) == [
            "in/a.jpg", "in/sub/c.jpg"
        ]
    finally:
        source.close()


def test_latest_skips_objects_that_were_there_before(
    s3_endpoint, store, s3, bucket, prefix, unique
):
    s3.put_object(Bucket=bucket, Key="in/old", Body=b"1")
    time.sleep(2.1)
    source = _open(s3_endpoint, store, bucket, prefix, unique, start_position="latest")
    try:
        assert source.read(10, 0.5) == []
        s3.put_object(Bucket=bucket, Key="in/new", Body=b"2")
        assert [r.id.rpartition("@")[0] for r in _drain(source)] == ["in/new"]
    finally:
        source.close()


class CountingS3:
    """The real boto3 client, counting the keys each LIST returns."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.listed = 0

    def list_objects_v2(self, **kwargs: Any) -> Any:
        page = self.client.list_objects_v2(**kwargs)
        self.listed += len(page.get("Contents", []))
        return page

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def test_a_poll_lists_a_bounded_slice_of_a_big_bucket_yet_finds_every_change(
    s3_endpoint, store, s3, bucket, prefix, unique
):
    keys = [f"in/{i:04d}" for i in range(300)]
    _put_many(s3, bucket, keys)
    spy = CountingS3(s3)
    location = BucketLocation.parse(f"s3://{bucket}/in/?endpoint={s3_endpoint}")
    identity = SourceIdentity(mapping_id=f"m-{unique}", prefix=prefix, consumer="c1")
    source = BucketSource(spy, store, location, identity, StartPosition("trim-horizon"),
                          poll_interval_s=0.05, sweep_pages=1, fast_pages=10, page_size=50)
    try:
        assert len(_drain(source, wait_s=0.3)) == 300
        time.sleep(1.1)
        s3.put_object(Bucket=bucket, Key="in/0007", Body=b"overwritten")  # early key
        s3.put_object(Bucket=bucket, Key="in/9999", Body=b"appended")  # after the fast path

        found: list[str] = []
        polls = 0
        while len(found) < 2 and polls < 12:
            spy.listed = 0
            batch = source.read(100, 0.0)
            if spy.listed:
                polls += 1
                assert spy.listed <= 100  # one fast page and one sweep page, never all 300
            found += [r.id.rpartition("@")[0] for r in batch]
            source.commit(batch)
            time.sleep(0.06)
        assert sorted(found) == ["in/0007", "in/9999"]
    finally:
        source.close()


def test_a_missing_bucket_is_not_found(s3_endpoint, store, prefix, unique):
    with pytest.raises(NotFound, match="does not exist"):
        open_source(f"s3://missing-{unique}/?endpoint={s3_endpoint}", mapping_id=unique,
                    redis=store, prefix=prefix)


def test_an_unreachable_endpoint_is_store_unavailable(store, prefix, unique):
    with pytest.raises(StoreUnavailable):
        open_source(f"s3://b-{unique}/?endpoint=http://127.0.0.1:1", mapping_id=unique,
                    redis=store, prefix=prefix)


@pytest.mark.parametrize(
    "uri", ["s3://", "s3:///prefix", "s3://b/p?endpoint=ftp://h", "s3://b/p?colour=red"]
)
def test_bad_bucket_uris_say_what_a_good_one_looks_like(store, prefix, unique, uri):
    with pytest.raises(InvalidParameter, match="s3://BUCKET"):
        open_source(uri, mapping_id=unique, redis=store, prefix=prefix)


def test_pages_the_suffix_rejects_whole_do_not_stall_the_listing(
    s3_endpoint, store, s3, bucket, prefix, unique
):
    _put_many(s3, bucket, ["in/a.png", "in/b.png", "in/c.png", "in/d.png", "in/e.jpg"])
    source = _open(s3_endpoint, store, bucket, prefix, unique, query="&suffix=.jpg",
                   options={"page_size": 2})
    try:
        assert [r.id.rpartition("@")[0] for r in _drain(source)] == ["in/e.jpg"]
        s3.put_object(Bucket=bucket, Key="in/0.jpg", Body=b"sorts first")
        found = []
        for _ in range(10):  # the sweep walks two keys a poll, past the rejected pages
            found += [r.id.rpartition("@")[0] for r in source.read(10, 0.3)]
            if found:
                break
        assert found == ["in/0.jpg"]
    finally:
        source.close()


def test_a_bucket_source_reads_with_the_credentials_of_its_own_profile(
    s3_endpoint, store, s3, bucket, prefix, unique, tmp_path, monkeypatch
):
    # Given an AWS profile of its own, different from the poller's environment
    (tmp_path / "credentials").write_text(
        f"[bucket-{unique}]\naws_access_key_id = AKIDOWN{unique[:8].upper()}\n"
        "aws_secret_access_key = own-secret\n"
    )
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    uri = f"s3://{bucket}/in/?endpoint={s3_endpoint}&profile=bucket-{unique}"
    # When the source is opened with `profile=`
    location = BucketLocation.parse(uri)
    assert location.profile == f"bucket-{unique}"
    creds = location.session().get_credentials()
    # Then it signs with the profile's keys, not the environment's, and reads the bucket
    assert creds.access_key == f"AKIDOWN{unique[:8].upper()}"
    s3.put_object(Bucket=bucket, Key="in/own.txt", Body=b"mine")
    source = _open(s3_endpoint, store, bucket, prefix, unique, query=f"&profile=bucket-{unique}")
    try:
        deadline = time.monotonic() + 10
        records: list = []
        while not records and time.monotonic() < deadline:
            records = source.read(10, 0.5)
        assert [r.record["s3"]["object"]["key"] for r in records] == ["in/own.txt"]
    finally:
        source.close()


def test_a_profile_the_machine_lacks_is_refused_when_the_mapping_is_created(
    s3_endpoint, bucket, tmp_path, monkeypatch
):
    from broker_adapters.sources.check import check_source

    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(InvalidParameter, match="profile 'nobody'.*not in this machine's AWS"):
        check_source(f"s3://{bucket}/in/?endpoint={s3_endpoint}&profile=nobody")
