"""Benchmark the gateway: sync latency beside the Python Client, and function URL throughput.

Runs a router, one worker and `warren gateway` as real processes under a unique prefix, then
  (a) sync invokes of a trivial function at concurrency 1: the Python `Client` and the
      gateway's Invoke API (SigV4-signed, keep-alive http.client; boto3 reported beside), in
      alternating blocks of the same run, p50/p99 each;
  (b) requests/s through a function URL (auth NONE) at concurrency 1, 16 and 64 with wrk,
      beside /healthz on the same server (the HTTP floor of this machine); then 60 s at
      concurrency 64 counting errors and timeouts, sampling the gateway's RSS every 5 s.
Every invocation runs in a sandbox. Writes bench/results/gateway.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from warren.client import Client  # noqa: E402
from warren.settings import Settings  # noqa: E402
from warren.store.accesskeys import AccessKeys  # noqa: E402

HANDLER = (
    "def handler(event, context):\n    return event\n\n"
    "def web(event, context):\n    return {'statusCode': 200, 'body': 'ok'}\n"
)


SOCKET_ERRORS = r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)"


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Fleet:
    """Router, worker and gateway as subprocesses, stopped by PID on exit."""

    def __init__(self, amqp_url: str, redis_url: str, slots: int, gateway_workers: int) -> None:
        self.prefix = f"benchgw{uuid.uuid4().hex[:8]}"
        self.env = {
            **os.environ,
            "WARREN_AMQP_URL": amqp_url,
            "WARREN_REDIS_URL": redis_url,
            "WARREN_PREFIX": self.prefix,
            "PYTHONPATH": str(ROOT),
        }
        self.settings = Settings.from_environ(self.env)
        self.cache = Path("/var/tmp/warren-bench") / self.prefix
        self.code = Path(tempfile.mkdtemp(prefix="warren-bench-code-"))
        (self.code / "app.py").write_text(HANDLER)
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.procs = [
            self._spawn("router"),
            self._spawn("worker", "--slots", str(slots), "--cache-dir", str(self.cache)),
        ]
        self.gateway = self._spawn(
            "gateway", "--port", str(self.port), "--workers", str(gateway_workers)
        )
        self.procs.append(self.gateway)
        self.client = Client.from_settings(self.settings)
        self.redis = redis.Redis.from_url(redis_url)

    def _spawn(self, *argv: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "warren", *argv],
            env=self.env,
            cwd=str(ROOT),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.endpoint + "/readyz", timeout=2) as r:
                    if r.status == 200 and self.redis.keys(f"{self.prefix}:worker:*"):
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit("the fleet did not come up")

    def gateway_rss_kb(self) -> int:
        """RSS of the gateway and its worker processes, in KB."""
        pids = [self.gateway.pid]
        kids = Path(f"/proc/{self.gateway.pid}/task/{self.gateway.pid}/children")
        if kids.exists():
            pids += [int(p) for p in kids.read_text().split()]
        total = 0
        for pid in pids:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        return total

    def close(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.client.close()
        from fleet import drop_queues

        drop_queues(self.settings.amqp.url, self.prefix)
        keys = list(self.redis.scan_iter(f"{self.prefix}*"))
        if keys:
            self.redis.delete(*keys)
        self.redis.close()
        shutil.rmtree(self.code, ignore_errors=True)
        shutil.rmtree(self.cache, ignore_errors=True)


class SignedInvoker:
    """The gateway's Invoke over one keep-alive connection, each request SigV4-signed."""

    def __init__(self, endpoint: str, key_id: str, secret: str, name: str) -> None:
        from botocore.auth import SigV4Auth
        from botocore.credentials import Credentials

        self._auth = SigV4Auth(Credentials(key_id, secret), "lambda", "us-east-1")
        host, port = endpoint.split("//")[1].split(":")
        self._conn = http.client.HTTPConnection(host, int(port))
        self._url = f"{endpoint}/2015-03-31/functions/{name}/invocations"
        self._path = f"/2015-03-31/functions/{name}/invocations"

    def __call__(self) -> None:
        from botocore.awsrequest import AWSRequest

        request = AWSRequest(method="POST", url=self._url, data=b"{}")
        self._auth.add_auth(request)
        self._conn.request("POST", self._path, body=b"{}", headers=dict(request.headers))
        response = self._conn.getresponse()
        response.read()
        if response.status != 200:
            raise SystemExit(f"gateway invoke failed: {response.status}")


def sync_latency(fleet: Fleet, key: tuple[str, str], runs: int) -> dict[str, Any]:
    import boto3

    lam = boto3.client("lambda", endpoint_url=fleet.endpoint, region_name="us-east-1",
                       aws_access_key_id=key[0], aws_secret_access_key=key[1])
    signed = SignedInvoker(fleet.endpoint, key[0], key[1], "echo")
    callers = {
        "client": lambda: fleet.client.invoke("echo", {}),
        "gateway": signed,
        "boto3": lambda: lam.invoke(FunctionName="echo", Payload=b"{}")["Payload"].read(),
    }
    times: dict[str, list[float]] = {name: [] for name in callers}
    for call in callers.values():  # warm sandboxes, caches and connections
        for _ in range(100):
            call()
    block = 50
    for _ in range(max(1, runs // block)):
        for name, call in callers.items():
            for _ in range(block):
                started = time.perf_counter()
                call()
                times[name].append((time.perf_counter() - started) * 1000)
    out: dict[str, Any] = {"runs_each": len(times["client"]), "blocks_of": block}
    for name, values in times.items():
        out[f"{name}_p50_ms"] = round(percentile(values, 50), 3)
        out[f"{name}_p99_ms"] = round(percentile(values, 99), 3)
    out["gateway_minus_client_p50_ms"] = round(out["gateway_p50_ms"] - out["client_p50_ms"], 3)
    lam.close()
    return out


def wrk(url: str, connections: int, seconds: int) -> dict[str, Any]:
    threads = min(2, connections)
    done = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--latency",
         "--timeout", "10s", url],
        capture_output=True, text=True, check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", done).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", done).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", done)
    sock = re.search(SOCKET_ERRORS, done)
    latency = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", done, re.M))
    return {
        "connections": connections,
        "seconds": seconds,
        "requests": total,
        "requests_per_s": round(rps, 1),
        "p50": latency.get("50"),
        "p99": latency.get("99"),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(int(g) for g in sock.groups()) if sock else 0,
        "timeouts": int(sock.group(4)) if sock else 0,
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def soak(fleet: Fleet, url: str, seconds: int) -> dict[str, Any]:
    """wrk at concurrency 64 for `seconds`, the gateway's RSS sampled every 5 s meanwhile."""
    proc = subprocess.Popen(
        ["wrk", "-t", "2", "-c", "64", "-d", f"{seconds}s", "--latency", "--timeout", "10s", url],
        stdout=subprocess.PIPE, text=True,
    )
    samples = []
    started = time.monotonic()
    while proc.poll() is None:
        samples.append((round(time.monotonic() - started, 1), fleet.gateway_rss_kb()))
        time.sleep(5)
    output = proc.stdout.read() if proc.stdout else ""
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    sock = re.search(SOCKET_ERRORS, output)
    rss = [kb for _, kb in samples[1:]] or [samples[0][1]]
    return {
        "seconds": seconds,
        "connections": 64,
        "requests_per_s": round(rps, 1),
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(int(g) for g in sock.groups()) if sock else 0,
        "timeouts": int(sock.group(4)) if sock else 0,
        "rss_kb_samples": samples,
        "rss_growth_kb": rss[-1] - rss[0],
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--amqp-url", default=os.environ.get(
        "WARREN_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F"))
    parser.add_argument("--redis-url", default=os.environ.get(
        "WARREN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=10, help="per wrk step")
    parser.add_argument("--soak", type=int, default=60, help="seconds at concurrency 64")
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--gateway-workers", type=int, default=1)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "gateway.json"))
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install wrk")
    started = time.monotonic()
    load_at_start = round(os.getloadavg()[0], 2)
    fleet = Fleet(args.amqp_url, args.redis_url, args.slots, args.gateway_workers)
    try:
        fleet.client.create_function("echo", code=fleet.code, handler="app.handler")
        fleet.client.create_function("web", code=fleet.code, handler="app.web")
        fleet.wait_ready()
        key, secret = AccessKeys(fleet.redis, fleet.prefix).create("bench")
        from warren.store.urls import UrlStore

        url_id = UrlStore(fleet.redis, None, fleet.prefix).create("web", None, "NONE").url_id
        url = f"{fleet.endpoint}/url/{url_id}/"
        sync = sync_latency(fleet, (key.access_key_id, secret), args.runs)
        print(json.dumps(sync, indent=1), flush=True)
        wrk(url, 16, 3)  # warm every slot's sandbox
        throughput = []
        for connections in (1, 16, 64):
            row = {
                "url": wrk(url, connections, args.seconds),
                "healthz": wrk(fleet.endpoint + "/healthz", connections, args.seconds),
            }
            print(connections, json.dumps(row), flush=True)
            throughput.append(row)
        soaked = soak(fleet, url, args.soak)
        print(json.dumps({k: v for k, v in soaked.items() if k != "rss_kb_samples"}), flush=True)
    finally:
        fleet.close()
    at64 = throughput[-1]["url"]
    result = {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "loadavg_1m_at_start": load_at_start,
                    "loadavg_1m_at_end": round(os.getloadavg()[0], 2)},
        "setup": {
            "worker": f"1 worker, {args.slots} slots (each invocation sandboxed)",
            "gateway": f"warren gateway --workers {args.gateway_workers} (uvicorn+starlette)",
            "load_generator": "wrk 4.1 (-t2 for c>=2, --timeout 10s)",
            "sync_client": "http.client keep-alive, each request SigV4-signed by botocore",
        },
        "sync_c1": sync,
        "throughput": throughput,
        "soak_c64": soaked,
        "targets": {
            "gateway_p50_within_1ms_of_client": sync["gateway_minus_client_p50_ms"] <= 1.0,
            "url_c64_at_least_1500_per_s": at64["requests_per_s"] >= 1500,
            "no_error_or_timeout_at_c64_for_60s": soaked["non_2xx"] == 0
            and soaked["socket_errors"] == 0 and soaked["seconds"] >= 60,
            "rss_flat_within_10mb": abs(soaked["rss_growth_kb"]) <= 10 * 1024,
        },
        "wall_s": round(time.monotonic() - started, 1),
    }
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["targets"], indent=1))


if __name__ == "__main__":
    main()
