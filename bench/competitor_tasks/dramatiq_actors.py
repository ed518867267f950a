"""The Dramatiq side of the benchmark: one broker factory shared by the client and the worker."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.common import dq_name, xq_name
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend

from competitor_tasks.counter import Counter
from competitor_tasks.namespace import Namespace

# "Concurrency 2" for Dramatiq: two worker processes with one worker thread each, so at most
# two tasks run at once, in two OS processes, like Celery's two prefork children. Each
# Dramatiq process consumes from RabbitMQ itself; the main process only supervises.
WORKER_ARGS = ["--processes", "2", "--threads", "1"]


@dataclass(frozen=True)
class DramatiqBench:
    broker: RabbitmqBroker
    backend: RedisBackend
    echo: dramatiq.Actor[[Any], Any]
    count: dramatiq.Actor[[], None]


def build(ns: Namespace) -> DramatiqBench:
    """A broker with its own actors on a queue private to `ns`, results on Redis."""
    broker = RabbitmqBroker(url=ns.amqp_url)
    backend = RedisBackend(url=ns.redis_url, namespace=ns.result_prefix,
                           use_namespace_prefix_keys=True)
    broker.add_middleware(Results(backend=backend))  # type: ignore[no-untyped-call]
    counter = Counter(ns.redis_url, ns.counter_key)

    def echo(value: Any) -> Any:
        return value

    def count() -> None:
        counter.incr()

    return DramatiqBench(
        broker=broker,
        backend=backend,
        echo=dramatiq.actor(actor_name="warren_bench_echo", queue_name=ns.queue,
                            broker=broker, store_results=True)(echo),
        # An async (fire-and-forget) invocation has no caller waiting, so it stores no result.
        count=dramatiq.actor(actor_name="warren_bench_count", queue_name=ns.queue,
                             broker=broker)(count),
    )


class DramatiqCompetitor:
    """The client side: what a Dramatiq user writes to call an actor and wait, or fire one."""

    name = "dramatiq"
    concurrency = "--processes 2 --threads 1 (2 worker processes, 1 thread each)"

    def __init__(self, ns: Namespace) -> None:
        self.version: str = dramatiq.__version__
        self.ns = ns
        self.bench = build(ns)

    def worker_argv(self) -> list[str]:
        target = "competitor_tasks.dramatiq_actors:install_from_environ"
        return [sys.executable, "-m", "dramatiq", target, *WORKER_ARGS]

    def round_trip(self, timeout_s: float) -> None:
        message = self.bench.echo.send(1)
        value = message.get_result(
            backend=self.bench.backend, block=True, timeout=int(timeout_s * 1000)
        )
        if value != 1:
            raise RuntimeError("dramatiq echo returned the wrong value")

    def fire(self) -> None:
        self.bench.count.send()

    def close(self) -> None:
        channel = self.bench.broker.channel
        for queue in (self.ns.queue, dq_name(self.ns.queue), xq_name(self.ns.queue)):
            channel.queue_delete(queue)
        self.bench.broker.close()


def install_from_environ() -> None:
    """Entry point for `dramatiq competitor_tasks.dramatiq_actors:install_from_environ`."""
    dramatiq.set_broker(build(Namespace.from_environ(os.environ)).broker)
