"""A worker's heartbeat: a Redis hash with a TTL that `warren status` lists while it lives."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import redis

from warren.errors import StoreUnavailable
from warren.keys import Keys
from warren.store.redis import redis_errors

log = logging.getLogger("warren.worker")


class Heartbeat:
    """Every `interval_s`, write `fields()` plus host/pid/time under `{prefix}:worker:{id}`."""

    def __init__(
        self,
        client: redis.Redis[bytes],
        prefix: str,
        worker_id: str,
        fields: Callable[[], dict[str, Any]],
        interval_s: float = 2.0,
    ) -> None:
        self._redis = client
        self.key = Keys(prefix).worker(worker_id)
        self._fields = fields
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)
        self._static = {"id": worker_id, "host": socket.gethostname(), "pid": os.getpid()}
        self._started = time.time()

    def start(self) -> None:
        self.beat()
        self._thread.start()

    def beat(self) -> None:
        mapping = {**self._static, **self._fields(), "started": self._started}
        mapping["last_heartbeat"] = time.time()
        pipe = self._redis.pipeline(transaction=False)
        pipe.hset(self.key, mapping={k: str(v) for k, v in mapping.items()})
        pipe.expire(self.key, max(3, int(self.interval_s * 3)))
        pipe.execute()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                with redis_errors("heartbeat"):
                    self.beat()
            except StoreUnavailable as exc:
                log.warning("heartbeat failed: %s", exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        try:
            with redis_errors("heartbeat"):
                self._redis.delete(self.key)
        except StoreUnavailable:
            pass
