"""Event source mappings: records/s at batch size 100, write-to-handler latency at batch size 1,
and S3 new-object latency against the poll interval; table on stdout, JSON in bench/results/.

Two paths are measured and named in the results:
- "in-process": the poller's runner (real sources, real batching, commits and counters) calls
  a trivial Python handler in its own process: the ceiling of the mapping machinery itself.
- "fleet": a real `warren up` (router, worker, sandboxes); the runner invokes synchronously
  through the fleet as Lambda's poller does. Completion is counted by the mapping's own
  `succeeded` counter (records committed after the handler returned), latency by the handler
  writing its receive time to Redis.
Run: python3 bench/sources.py [--quick]
"""

from __future__ import annotations

import argparse
import base64
import os
import platform
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from source_kit import (  # noqa: E402
    S3,
    Bench,
    Counter,
    latency,
    summary,
    throughput,
    wait,
)
from sources_fleet import SLOW_HANDLER_S, fleet_runs  # noqa: E402
from sources_triggers import trigger_runs  # noqa: E402

from router.batching.invoker import PythonInvoker  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "sources.json"


def s3_latency(b: Bench, poll_s: float, count: int) -> dict[str, Any]:
    import boto3

    s3 = boto3.client("s3", endpoint_url=S3, region_name="us-east-1",
                      aws_access_key_id="bench", aws_secret_access_key="bench")
    bucket = f"{b.prefix}-{uuid.uuid4().hex[:6]}".lower()
    s3.create_bucket(Bucket=bucket)
    seen: dict[str, float] = {}

    def handler(event: dict[str, Any], context: Any) -> None:
        for record in event["Records"]:
            seen[record["s3"]["object"]["key"]] = time.time()

    spec = b.store.create(function="bench", source=f"s3://{bucket}/?endpoint={S3}")
    written: dict[str, float] = {}
    try:
        with b.running(spec, PythonInvoker(handler), poll_interval_s=poll_s):
            time.sleep(2 * poll_s + 0.5)
            for n in range(count):
                key = f"obj-{n:04d}"
                s3.put_object(Bucket=bucket, Key=key, Body=b"x")
                written[key] = time.time()
                time.sleep(poll_s / 3)
            wait(lambda: len(seen) >= count, 10 * poll_s + 10)
    finally:
        for key in written:
            s3.delete_object(Bucket=bucket, Key=key)
        s3.delete_bucket(Bucket=bucket)
        b.store.purge(spec.uuid)
    samples = sorted(1000 * (seen[k] - written[k]) for k in written if k in seen)
    out = summary(samples, count)
    out["poll_interval_s"] = poll_s
    out["within_2x_poll"] = bool(samples) and samples[-1] <= 2000 * poll_s
    return out



def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="smaller counts")
    parser.add_argument("--fleet-only", action="store_true",
                        help="only the fleet runs (replacing only them in the results)")
    parser.add_argument("--slots", type=int, default=2, help="worker slots of `warren up`")
    parser.add_argument("--triggers-only", action="store_true",
                        help="only PostgreSQL, MQTT and topics beside a Redis stream")
    args = parser.parse_args()
    n_stream, n_queue, n_lat = (40_000, 20_000, 100) if args.quick else (100_000, 40_000, 300)
    prefix = f"bench-src-{uuid.uuid4().hex[:8]}"
    # boto3 (the S3 source) insists on credentials; an S3-compatible test store takes any.
    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    b = Bench(prefix)
    results: dict[str, Any] = {"machine": {
        "cpus": os.cpu_count(), "python": platform.python_version(),
        "load_avg_start": os.getloadavg()}}
    if args.triggers_only:
        triggers(b, args.quick, args.slots, results)
        return
    if args.fleet_only:
        try:
            results["fleet"] = fleet_runs(b, prefix, n_stream // 2, n_queue // 2, n_lat, args.slots)
        finally:
            b.cleanup()
        results["machine"]["load_avg_end"] = os.getloadavg()
        # Keep the other paths' figures: only the fleet's (and its machine note) change.
        merged = orjson.loads(RESULTS.read_bytes()) if RESULTS.exists() else {}
        merged["fleet"], merged["fleet_machine"] = results["fleet"], results["machine"]
        RESULTS.write_bytes(orjson.dumps(merged, option=orjson.OPT_INDENT_2))
        report(results)
        return
    try:
        times = f"{prefix}:times"

        def noting(event: dict[str, Any], context: Any) -> None:
            now = time.time()
            if "Records" in event:
                ns = [orjson.loads(base64.b64decode(x["kinesis"]["data"]))["n"]
                      for x in event["Records"]]
            else:
                ns = [orjson.loads(base64.b64decode(m["data"]))["n"]
                      for ms in event["rmqMessagesByQueue"].values() for m in ms]
            b.tally.hset(times, mapping={str(n): repr(now) for n in ns})

        ip: dict[str, Any] = {}
        counter = Counter()
        ip["stream_batch100"] = throughput(b, "stream", n_stream, PythonInvoker(counter),
                                           counted=counter.snapshot)
        for factor in (4, 10):
            counter = Counter()
            ip[f"stream_batch100_pf{factor}"] = throughput(
                b, "stream", n_stream, PythonInvoker(counter), concurrency=factor,
                counted=counter.snapshot, factor=factor)
        for factor in (1, 4, 10):
            counter = Counter(SLOW_HANDLER_S)
            ip[f"stream_batch100_sleep20ms_pf{factor}"] = throughput(
                b, "stream", n_stream // 10, PythonInvoker(counter), concurrency=factor,
                counted=counter.snapshot, factor=factor)
        counter = Counter()
        ip["queue_batch100"] = throughput(b, "queue", n_queue, PythonInvoker(counter),
                                          concurrency=4, counted=counter.snapshot)
        ip["stream_latency_batch1"] = latency(b, "stream", n_lat, PythonInvoker(noting), times)
        ip["queue_latency_batch1"] = latency(b, "queue", n_lat, PythonInvoker(noting), times)
        results["in-process"] = ip
        results["s3_new_object"] = [
            s3_latency(b, p, 10 if args.quick else 20) for p in (0.5, 1.0, 2.0)]
        results["fleet"] = fleet_runs(b, prefix, n_stream // 2, n_queue // 2, n_lat, args.slots)
        results["triggers"] = trigger_runs(b, 20_000 if args.quick else 40_000, n_lat, args.slots)
    finally:
        b.cleanup()
    results["machine"]["load_avg_end"] = os.getloadavg()
    results["targets"] = {"records_per_s": 50_000, "p50_ms_batch1": 10, "s3": "within 2 x poll",
                          **TRIGGER_TARGETS}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    report(results)


TRIGGER_TARGETS = {"table_rows_per_s": 10_000, "mqtt_msgs_per_s": 10_000,
                   "topic_publish_to_handler_p50_ms": 5}


def triggers(b: Bench, quick: bool, slots: int, results: dict[str, Any]) -> None:
    """Only the triggers (and the stream they are compared with); the rest stays as it was."""
    try:
        results["triggers"] = trigger_runs(b, 20_000 if quick else 40_000, 100 if quick else 300,
                                           slots)
    finally:
        b.cleanup()
    results["machine"]["load_avg_end"] = os.getloadavg()
    merged = orjson.loads(RESULTS.read_bytes()) if RESULTS.exists() else {}
    merged["triggers"], merged["triggers_machine"] = results["triggers"], results["machine"]
    merged.setdefault("targets", {}).update(TRIGGER_TARGETS)
    RESULTS.write_bytes(orjson.dumps(merged, option=orjson.OPT_INDENT_2))
    report(results)


def report(results: dict[str, Any]) -> None:
    print(f"{'path':<11} {'measure':<24} {'result':>40}")
    for path in ("in-process", "fleet", "triggers"):
        rows = dict(results.get(path, {}))
        nested = rows.pop("fleet", None) if path == "triggers" else None
        if isinstance(nested, dict):  # the triggers' fleet runs
            rows.update({f"fleet {k}": v for k, v in nested.items()})
        for name, r in rows.items():
            if not isinstance(r, dict) or not ("records_per_s" in r or "samples" in r):
                continue
            if "records_per_s" in r:
                shown = f"{r['records_per_s']:>8} rec/s ({r['records']} in {r['seconds']} s)"
            else:
                shown = f"p50 {r.get('p50_ms')} ms  p99 {r.get('p99_ms')} ms ({r['samples']})"
            print(f"{path:<11} {name:<24} {shown:>40}")
            if r.get("cpu_us_per_record"):
                cpu = ", ".join(f"{k} {v}" for k, v in r["cpu_us_per_record"].items())
                print(f"{'':<11} {'  CPU us/record':<24} {cpu}")
    for r in results.get("s3_new_object", []):
        shown = f"p50 {r.get('p50_ms')} ms  max {r.get('max_ms')} ms  <=2x: {r['within_2x_poll']}"
        print(f"{'in-process':<11} {'s3 poll ' + str(r['poll_interval_s']) + ' s':<24} {shown:>40}")
    machine = results["machine"]
    print(f"load average {machine['load_avg_start']} -> {machine['load_avg_end']}")
    print(f"written to {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
