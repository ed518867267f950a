"""The names one benchmark run uses, passed to worker processes through WARREN_BENCH_* variables."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class Namespace:
    """Everything a competitor worker needs: where the services are and its private names."""

    amqp_url: str
    redis_url: str
    queue: str
    counter_key: str
    result_prefix: str

    @classmethod
    def fresh(cls, framework: str, amqp_url: str, redis_url: str) -> Namespace:
        # Dramatiq only accepts queue names matching [a-zA-Z_][a-zA-Z0-9._-]*.
        tag = f"warren_bench_{framework}_{uuid.uuid4().hex[:12]}"
        return cls(
            amqp_url=amqp_url,
            redis_url=redis_url,
            queue=tag,
            counter_key=f"{tag}:done",
            result_prefix=f"{tag}:results",
        )

    def to_environ(self) -> dict[str, str]:
        return {
            "WARREN_BENCH_AMQP_URL": self.amqp_url,
            "WARREN_BENCH_REDIS_URL": self.redis_url,
            "WARREN_BENCH_QUEUE": self.queue,
            "WARREN_BENCH_COUNTER_KEY": self.counter_key,
            "WARREN_BENCH_RESULT_PREFIX": self.result_prefix,
        }

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Namespace:
        return cls(
            amqp_url=environ["WARREN_BENCH_AMQP_URL"],
            redis_url=environ["WARREN_BENCH_REDIS_URL"],
            queue=environ["WARREN_BENCH_QUEUE"],
            counter_key=environ["WARREN_BENCH_COUNTER_KEY"],
            result_prefix=environ["WARREN_BENCH_RESULT_PREFIX"],
        )
