"""A real fleet for a test: router and worker processes under a unique prefix, torn down after."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis

from broker_adapters.amqp import Backbone
from warren.client import Client
from warren.keys import Keys
from warren.settings import AmqpSettings, Settings

CODE = Path(__file__).parent / "handlers" / "fleet"
REPO = Path(__file__).resolve().parents[2]


def stop_process(
    proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, timeout: float = 30
) -> int:
    """Signal `proc` (if it still runs), wait `timeout` s, then kill it; its exit status."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


class Fleet:
    """Start `warren router` / `warren worker` processes for one isolated prefix."""

    def __init__(
        self, amqp_url: str, redis_url: str, prefix: str, logdir: Path, **env: str
    ) -> None:
        self.prefix = prefix
        self.logdir = logdir
        self.env = {
            **os.environ,
            "WARREN_AMQP_URL": amqp_url,
            "WARREN_REDIS_URL": redis_url,
            "WARREN_PREFIX": prefix,
            "WARREN_THROTTLE_DELAY_MS": "100",
            "WARREN_THROTTLE_MAX_MS": "400",  # throttle waits double to 0.4 s, not 5 minutes
            "WARREN_ASYNC_RETRY_DELAYS": "0.2,0.4",
            **env,
        }
        self.env.setdefault("PYTHONPATH", str(REPO))
        self.settings = Settings.from_environ(self.env)
        self.client = Client.from_settings(self.settings)
        self.redis = redis.Redis.from_url(redis_url)
        self.keys = Keys(prefix)
        self.procs: list[subprocess.Popen[bytes]] = []
        # Sandboxes run as unprivileged users: the code cache must sit in a world-traversable
        # place (pytest's tmp dirs are 0700).
        self.cache_dir = Path("/var/tmp/warren-test") / prefix
        self._serial = 0

    # -- processes ----------------------------------------------------------------------------
    def spawn(self, *argv: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start `warren ARGV...`; `env` overrides some of the fleet's variables for it."""
        self._serial += 1
        log = open(self.logdir / f"{argv[0]}-{self._serial}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "warren", *argv],
            env={**self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.env.get("WARREN_TEST_CWD", str(REPO)),
        )
        log.close()
        self.procs.append(proc)
        return proc

    def worker(
        self,
        slots: int = 2,
        wait: bool = True,
        pool: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        before = self.workers()
        argv = ["worker", "--slots", str(slots), "--cache-dir", str(self.cache_dir)]
        proc = self.spawn(*argv, *(["--pool", pool] if pool else []), env=env)
        if wait:
            self.wait_for(lambda: len(self.workers()) > len(before), what="a worker heartbeat")
        return proc

    def router(self) -> subprocess.Popen[bytes]:
        proc = self.spawn("router")
        self.wait_for(lambda: self.consumers(self.keys.async_queue) > 0, what="the router")
        return proc

    def workers(self) -> list[bytes]:
        return list(self.redis.scan_iter(f"{self.prefix}:worker:*"))

    def consumers(self, queue: str) -> int:
        out = subprocess.run(
            ["rabbitmqctl", "-q", "list_queues", "name", "consumers"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        for line in out.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == queue:
                return int(parts[1])
        return 0

    def wait_for(self, predicate: Any, timeout: float = 30.0, what: str = "a condition") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            for proc in self.procs:
                if proc.poll() is not None and proc.returncode not in (0, -9):
                    raise AssertionError(f"{proc.args} exited {proc.returncode}: {self.logs()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}\n{self.logs()}")
            time.sleep(0.05)

    def logs(self) -> str:
        return "\n".join(
            f"== {p.name}\n{p.read_text(errors='replace')[-3000:]}"
            for p in sorted(self.logdir.glob("*.log"))
        )

    def stop(
        self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 30
    ) -> int:
        return stop_process(proc, sig, timeout)

    def cli(
        self, *argv: str, input: bytes | None = None, timeout: float = 60
    ) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "warren", *argv],
            env=self.env,
            input=input,
            capture_output=True,
            timeout=timeout,
            cwd=str(REPO),
            check=False,
        )

    # -- functions and destinations -----------------------------------------------------------
    def function(self, name: str, handler: str = "app.echo", **options: Any) -> Any:
        return self.client.create_function(name, code=CODE, handler=handler, **options)

    def stream_records(self, stream: str) -> list[dict[str, Any]]:
        import orjson

        return [orjson.loads(f[b"record"]) for _id, f in self.redis.xrange(stream)]

    def client_logs(self, function: str) -> list[Any]:
        from warren.store.logs import LogStore

        return LogStore(self.redis, self.prefix).read(function)

    def worker_status(self) -> list[dict[str, str]]:
        return [
            {k.decode(): v.decode() for k, v in self.redis.hgetall(key).items()}
            for key in self.workers()
        ]

    def _backbone(self) -> Backbone:
        if getattr(self, "_bb", None) is None:
            self._bb = Backbone(self.settings.amqp, self.keys, name="warren-test")
        return self._bb

    def queue_depth(self, queue: str) -> int:
        return self._backbone().depth(queue) or 0

    def publish_raw(self, queue: str, body: bytes) -> None:
        self._backbone().declare_queue(queue)
        self._backbone().publish(queue, body)

    def take(self, queue: str) -> Any:
        delivery = self._backbone().get(queue)
        assert delivery is not None, f"{queue} is empty"
        return delivery

    def take_json(self, queue: str) -> Any:
        import orjson

        return orjson.loads(self.take(queue).body)

    # -- teardown -----------------------------------------------------------------------------
    def close(self) -> None:
        for proc in self.procs:
            self.stop(proc, timeout=20)
        self.client.close()
        if getattr(self, "_bb", None) is not None:
            self._bb.close()
        try:
            drop_queues(self.settings.amqp, self.prefix)
        finally:
            shutil.rmtree(self.cache_dir, ignore_errors=True)
            keys = list(self.redis.scan_iter(f"{self.prefix}*"))
            if keys:
                self.redis.delete(*keys)
            self.redis.close()


def make_fleet(amqp_url: str, redis_url: str, unique: str, tmp_path: Path, **env: str) -> Fleet:
    return Fleet(amqp_url, redis_url, f"t{unique}", tmp_path, **env)


def drop_queues(amqp: AmqpSettings, prefix: str) -> None:
    """Delete every queue a fleet under `prefix` declared: its work, async and dead queues, its
    sync lane, and the delay queues its throttles and retries made (found by name)."""
    names = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "name"], capture_output=True, text=True, check=False
    ).stdout.split()
    backbone = Backbone(amqp, Keys(prefix), name="warren-test-cleanup")
    try:
        for name in names:
            if name.startswith(prefix + ".") or name.startswith(prefix + "-"):
                backbone.delete_queue(name)
    finally:
        backbone.close()
