"""Runs one mapping's BatchRunner in a thread against real services, for the mapping tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import redis

from broker_adapters.sources import open_source
from router.batching.invoker import Invoker
from router.batching.runner import BatchRunner
from router.destination import open_destination
from warren.mapping import MappingSpec
from warren.settings import Settings
from warren.store.mappings import MappingStore

# The Lambda handler the mapping tests deploy: it counts the records it sees in Redis.
RECORDER = Path(__file__).parent / "handlers" / "mapping" / "recorder.py"


class Harness:
    """A store under a unique prefix plus helpers to run one mapping and read its destination."""

    def __init__(self, redis_url: str, amqp_url: str, prefix: str) -> None:
        self.redis = redis.Redis.from_url(redis_url)
        self.settings = Settings.from_environ(
            {"WARREN_PREFIX": prefix}, amqp_url=amqp_url, redis_url=redis_url
        )
        self.prefix = prefix
        self.store = MappingStore(self.redis, prefix)
        self._threads: list[tuple[threading.Thread, threading.Event]] = []

    def runner(self, spec: MappingSpec, invoker: Invoker, options: dict[str, Any] | None = None,
               **kw: Any) -> BatchRunner:
        def open_() -> Any:
            return open_source(
                spec.source, mapping_id=spec.uuid, start_position=spec.start_position,
                redis=self.redis, prefix=self.prefix,
                options={"consumer": "test-poller", "batch_size": spec.batch_size,
                         "prefetch": max(1000, spec.batch_size * (kw.get("concurrency", 1) + 2)),
                         **(options or {})},
            )

        kw.setdefault("retry_base_s", 0.02)
        kw.setdefault("poll_wait_s", 0.1)
        return BatchRunner(
            spec, open_, invoker, self.store,
            destination=lambda uri: open_destination(uri, self.settings, self.redis), **kw,
        )

    def start(self, runner: BatchRunner) -> threading.Event:
        stop = threading.Event()
        thread = threading.Thread(target=runner.run, args=(stop,), daemon=True)
        thread.start()
        self._threads.append((thread, stop))
        return stop

    def stop_all(self) -> None:
        for _thread, stop in self._threads:
            stop.set()
        for thread, _ in self._threads:
            thread.join(timeout=30)
            assert not thread.is_alive(), "a mapping runner did not stop"
        self._threads.clear()

    def destination_records(self, stream: str) -> list[dict[str, Any]]:
        return [orjson.loads(f[b"record"]) for _, f in self.redis.xrange(stream)]

    def cleanup(self) -> None:
        self.stop_all()
        keys = list(self.redis.scan_iter(match=f"{self.prefix}*", count=1000))
        if keys:
            self.redis.delete(*keys)
        self.redis.close()


def wait_for(predicate: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what or predicate}")
