"""A fleet on the fault suite's own RabbitMQ node and Redis, with an async load and a checker."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

from support.fleet import Fleet

from faults.history import History, Verdict
from faults.nodes import RabbitNode
from faults.runlog import RunLog
from warren.errors import Unavailable

CODE = Path(__file__).resolve().parents[1] / "support" / "handlers" / "faults"


class FaultFleet(Fleet):
    """`Fleet`, but asking its own node (not the shared one) about consumers and queues."""

    def __init__(self, node: RabbitNode, redis_url: str, prefix: str, logdir: Path,
                 **env: str) -> None:
        super().__init__(node.url, redis_url, prefix, logdir, **env)
        self.node = node
        self.runs_dir = self.cache_dir.parent / f"{prefix}-runs"
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self.runs_dir.chmod(0o777)  # handlers run as unprivileged uids
        self.run_log = RunLog(self.runs_dir)  # behind the sandbox walls handlers cannot write here
        self._queues: set[str] = set()
        self._drained: dict[str, list[str]] = {}

    def consumers(self, queue: str) -> int:
        return self.node.consumers(queue)

    def recording_function(
        self, name: str, destination: str = "redis+stream", handler: str = "faultapp.record",
        **options: Any,
    ) -> tuple[str, History]:
        """A function whose handler logs each run to a file; its successes go to a Redis
        stream or (destination="amqp") a queue."""
        runs = self.runs_dir / f"{name}.runs"
        runs.touch()
        runs.chmod(0o666)
        done = f"{self.prefix}-{name}-done"
        options.setdefault("timeout_s", 10)
        self.client.create_function(
            name, code=CODE, handler=handler,
            env={"RUNS_FILE": str(runs), "RUNS_ADDR": self.run_log.address},
            on_success=f"{destination}:///{done}", **options,
        )
        if destination == "amqp":
            self._queues.add(done)
        return done, History(name, runs)

    def completions(self, name: str) -> list[str]:
        """Request ids of the success records sent to `name` (a stream or a queue) so far."""
        if name in self._queues:
            return self._drain(name)
        try:
            return [r["requestContext"]["requestId"] for r in self.stream_records(name)]
        except Exception:  # Redis itself may be the fault under test
            return []

    def _drain(self, queue: str) -> list[str]:
        import orjson

        from broker_adapters.amqp import Backbone

        got = self._drained.setdefault(queue, [])
        try:
            backbone = Backbone(self.settings.amqp, self.keys, name="warren-fault-reader")
        except Unavailable:
            return list(got)
        try:
            while (delivery := backbone.get(queue)) is not None:
                got.append(orjson.loads(delivery.body)["requestContext"]["requestId"])
        except Unavailable:
            pass
        finally:
            backbone.close()
        return list(got)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:  # a test that failed while a worker was stopped (SIGSTOP)
                proc.send_signal(signal.SIGCONT)
            self.stop(proc, timeout=20)
        self.client.close()
        self.run_log.close()
        import shutil

        shutil.rmtree(self.cache_dir, ignore_errors=True)
        shutil.rmtree(self.runs_dir, ignore_errors=True)
        try:
            keys = list(self.redis.scan_iter(f"{self.prefix}*"))
            if keys:
                self.redis.delete(*keys)
        except Exception:  # noqa: S110 - a private Redis, gone with the test
            pass
        self.redis.close()


class Load:
    """Submits async invocations in small batches from a thread, riding out outages: only
    what the client got a 202 for counts as accepted."""

    def __init__(self, fleet: FaultFleet, function: str, history: History, total: int,
                 batch: int = 20, every_s: float = 0.05, sleep_s: float = 0.05) -> None:
        self.fleet = fleet
        self.function = function
        self.history = history
        self.total = total
        self.batch = batch
        self.every_s = every_s
        self.sleep_s = sleep_s
        self.refused = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._n = 0

    def start(self) -> Load:
        self._thread.start()
        return self

    def _run(self) -> None:
        client = self.fleet.client
        while self._n < self.total:
            ns = list(range(self._n, min(self.total, self._n + self.batch)))
            try:
                results = client.invoke_many(
                    self.function, [{"n": n, "sleep": self.sleep_s} for n in ns]
                )
            except Unavailable:
                self.refused += 1
                time.sleep(0.2)
                continue
            self.history.accept(results, ns)
            self._n += len(ns)
            time.sleep(self.every_s)

    def join(self, timeout: float = 120) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the load did not finish submitting"


def wait_all_done(fleet: FaultFleet, stream: str, history: History, timeout: float) -> None:
    """Wait until every accepted invocation completed; marks when work flowed after the fault."""
    deadline = time.monotonic() + timeout
    seen = len(fleet.completions(stream))
    while True:
        done = set(fleet.completions(stream))
        if history.back_at is not None and history.flowing_at is None and len(done) > seen:
            history.mark_flowing()
        seen = max(seen, len(done))
        if set(history.accepted) <= done:
            if history.back_at is not None and history.flowing_at is None:
                history.mark_flowing()
            return
        if time.monotonic() > deadline:
            return
        time.sleep(0.1)


def results_dir() -> Path | None:
    raw = os.environ.get("WARREN_FAULT_RESULTS")
    return Path(raw) if raw else None


def describe(verdict: Verdict, fleet: FaultFleet) -> str:
    queues = [
        row for row in fleet.node.queues("messages_ready", "messages_unacknowledged", "consumers")
        if row and row[0].startswith(fleet.prefix)
    ]
    return f"{verdict.as_dict()}\nqueues: {queues}\n{fleet.logs()[-6000:]}"
