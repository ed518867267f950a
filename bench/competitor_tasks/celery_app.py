"""The Celery side of the benchmark: one app factory shared by the client and the worker."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

from celery import Celery, Task

from competitor_tasks.counter import Counter
from competitor_tasks.namespace import Namespace

ECHO = "warren_bench.echo"
COUNT = "warren_bench.count"

# "Concurrency 2" for Celery: its default pool (prefork) with two child processes; the main
# process consumes from RabbitMQ and hands tasks to the children. Gossip, mingle, heartbeat
# and remote control only talk to other workers on the shared broker, so they are switched
# off to keep this run isolated from anything else on the vhost.
WORKER_ARGV = [
    "worker",
    "--pool=prefork",
    "--concurrency=2",
    "--loglevel=WARNING",
    "--without-gossip",
    "--without-mingle",
    "--without-heartbeat",
]


@dataclass(frozen=True)
class CeleryBench:
    app: Celery
    echo: Task
    count: Task


def build(ns: Namespace) -> CeleryBench:
    """An app whose queue, exchange and Redis keys are all private to `ns`."""
    app = Celery("warren_bench", set_as_current=False)
    app.conf.update(
        broker_url=ns.amqp_url,
        result_backend=ns.redis_url,
        result_backend_transport_options={"global_keyprefix": f"{ns.result_prefix}:"},
        result_expires=600,
        task_default_queue=ns.queue,
        worker_enable_remote_control=False,
        broker_connection_retry_on_startup=True,
    )
    counter = Counter(ns.redis_url, ns.counter_key)

    def echo(value: Any) -> Any:
        return value

    def count() -> None:
        counter.incr()

    return CeleryBench(
        app=app,
        echo=app.task(name=ECHO)(echo),
        # An async (fire-and-forget) invocation has no caller waiting, so it stores no result.
        count=app.task(name=COUNT, ignore_result=True)(count),
    )


class CeleryCompetitor:
    """The client side: what a Celery user writes to call a task and wait, or fire one."""

    name = "celery"
    concurrency = "prefork pool, --concurrency=2 (2 child processes)"

    def __init__(self, ns: Namespace) -> None:
        import celery

        self.version: str = celery.__version__
        self.ns = ns
        self.bench = build(ns)

    def worker_argv(self) -> list[str]:
        return [sys.executable, "-m", "competitor_tasks.celery_app"]

    def round_trip(self, timeout_s: float) -> None:
        result = self.bench.echo.delay(1)
        if result.get(timeout=timeout_s) != 1:
            raise RuntimeError("celery echo returned the wrong value")

    def fire(self) -> None:
        self.bench.count.delay()

    def close(self) -> None:
        with self.bench.app.connection_for_write() as conn:
            conn.default_channel.queue_delete(self.ns.queue)
            conn.default_channel.exchange_delete(self.ns.queue)
        self.bench.app.close()


def main() -> None:
    """Run a worker for the namespace in the WARREN_BENCH_* variables."""
    bench = build(Namespace.from_environ(os.environ))
    bench.app.worker_main(argv=WORKER_ARGV + sys.argv[1:])


if __name__ == "__main__":
    main()
