"""The composition root's wiring: the one place that builds each process from its rooms.

CLI commands parse their options, call one `build_*` here, run what it returns and exit.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from broker_adapters.amqp import Backbone
from broker_adapters.poller import Poller
from broker_adapters.sources import open_source, purge_source
from broker_adapters.topics import TopicBus
from router.admission.semaphore import Semaphore
from router.batching.invoker import FleetInvoker, Invoker
from router.batching.runner import BatchRunner
from router.destination import DestinationSet, open_destination
from router.dispatch import Dispatcher
from router.metrics import CountedDestinations, RouterMetrics
from router.relay import TopicRelay
from router.retry import RetryPolicy
from router.router import Router
from router.topics import Topics
from warren.aws import function_arn
from warren.errors import ConfigError
from warren.function import DEFAULT_POOL, FunctionSpec
from warren.keys import Keys
from warren.mapping import MappingSpec
from warren.observe.metrics import Registry
from warren.settings import Settings
from warren.source import Source
from warren.store.codes import CodeStore
from warren.store.logs import LogStore
from warren.store.mappings import MappingStore
from warren.store.redis import connect
from warren.store.registry import Registry as FunctionRegistry
from warren.store.throttles import ThrottleStore
from warren.store.topics import TopicStore
from warren.store.usage import UsageMeter
from workers.codecache import CodeCache
from workers.completion import Completion
from workers.executor import Executor
from workers.logship import ShippingLogStore
from workers.metrics import MeteredExecutor, WorkerMetrics
from workers.pool import SandboxPool, WarmSandbox
from workers.provisioner import Provisioner
from workers.worker import Worker, WorkerConfig


def retry_policy(environ: dict[str, str] | os._Environ[str]) -> RetryPolicy:
    """WARREN_ASYNC_RETRY_DELAYS ('60,120' s, Lambda's), WARREN_THROTTLE_DELAY_MS (500: a
    throttled invocation's first wait) and WARREN_THROTTLE_MAX_MS (300000: the waits double up
    to this, as Lambda's do up to 5 minutes)."""
    delays = RetryPolicy.parse_delays(environ.get("WARREN_ASYNC_RETRY_DELAYS", "60,120"))
    throttle_ms = _milliseconds(environ, "WARREN_THROTTLE_DELAY_MS", 500)
    max_ms = _milliseconds(environ, "WARREN_THROTTLE_MAX_MS", 300_000)
    return RetryPolicy(
        delays_s=delays,
        throttle_delay_s=max(1, throttle_ms) / 1000,
        throttle_max_s=max(throttle_ms, max_ms) / 1000,
    )


def _milliseconds(environ: Any, name: str, default: int) -> int:
    raw = environ.get(name, str(default))
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be milliseconds, got {raw!r}") from None


def _positive_int(environ: Any, name: str, default: int) -> int:
    raw = environ.get(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{name} must be a positive whole number, got {raw!r}")
    return value


def sandbox_for(
    spec: FunctionSpec, code_dir: Path, isolation: Any = None, codes: CodeCache | None = None
) -> WarmSandbox:
    """A warm sandbox for one function spec (the worker's pool calls this)."""
    from sandbox import Sandbox

    opt_dir = None
    if spec.layers:
        if codes is None:
            raise ConfigError(f"{spec.name} uses layers: a code cache must merge them")
        opt_dir = str(codes.opt([layer.code_sha256 for layer in spec.layers]))

    sandbox: WarmSandbox = Sandbox(
        str(code_dir),
        handler=spec.handler,
        memory_mb=spec.memory_mb,
        timeout_s=spec.timeout_s,
        env=dict(spec.env),
        function_name=spec.name,
        function_version=spec.version,
        invoked_function_arn=spec.arn,
        isolation=isolation,
        runtime=spec.runtime,  # one this worker cannot run is refused here, with the list
        opt_dir=opt_dir,
        network=spec.network,
        ephemeral_storage_mb=spec.ephemeral_storage_mb,
    )
    return sandbox


def _connector(settings: Settings) -> Callable[[str], Backbone]:
    keys = Keys(settings.prefix)
    return lambda name: Backbone(settings.amqp, keys, name=name)


def build_worker(
    settings: Settings, config: WorkerConfig, policy: RetryPolicy,
    metrics: WorkerMetrics | None = None, log_stdout: bool = False,
) -> Worker:
    """A worker; with `metrics`, its invocations are also counted for its /metrics; with
    `log_stdout`, their logs also go to stdout as JSON lines."""
    from sandbox import Isolation

    isolation = Isolation.from_environ(os.environ)  # WARREN_SANDBOX_UID_BASE/_COUNT, checked now
    client = connect(settings.redis, connect_timeout_s=None)
    registry = FunctionRegistry(client, CodeStore(client, settings.prefix), prefix=settings.prefix)
    semaphore = Semaphore(
        client, settings.prefix, settings.account_concurrency, registry.reservations
    )
    codes = CodeCache(CodeStore(client, settings.prefix), config.cache_dir, config.cache_ttl_s)
    pool = SandboxPool(
        lambda spec, code_dir: sandbox_for(spec, code_dir, isolation, codes),
        max_idle=config.max_idle or 2 * config.slots,
        idle_s=config.idle_s,
    )
    executor = Executor(pool, codes, semaphore)
    if metrics is not None:
        executor = MeteredExecutor(pool, codes, semaphore)
        executor.metrics = metrics
    completion = Completion(
        client,
        settings.prefix,
        semaphore,
        (ShippingLogStore if log_stdout else LogStore)(
            client, settings.prefix, settings.log_maxlen, settings.log_max_age_days * 86400
        ),
        DestinationSet(settings, client) if metrics is None
        else CountedDestinations(settings, client, metrics.registry),
        policy,
        meter=UsageMeter(
            settings.prefix,
            settings.usage_retention_days * 86400,
            tap=None if metrics is None else metrics.observe,
        ),
    )
    return Worker(config, _connector(settings), executor, completion)


def build_provisioner(settings: Settings, config: WorkerConfig, worker: Worker) -> Provisioner:
    """The worker's provisioned concurrency loop, over the worker's own pool and code cache."""
    client = connect(settings.redis, connect_timeout_s=None)
    registry = FunctionRegistry(client, CodeStore(client, settings.prefix),
                                prefix=settings.prefix,
                                account_concurrency=settings.account_concurrency)
    keys = Keys(settings.prefix)

    def live_workers() -> list[str]:
        # The heartbeats of this pool's workers (a worker without one is dead or not yet up).
        found = []
        for key in client.scan_iter(keys.workers_pattern):
            pool = client.hget(key, "pool")
            if (pool or DEFAULT_POOL.encode()).decode() == config.pool:
                found.append(key.decode()[len(keys.worker("")):])
        return found

    return Provisioner(
        registry.provisioned, registry.get_function, worker.executor.pool, worker.executor.codes,
        config.worker_id, config.pool, live_workers,
    )


def build_router(
    settings: Settings, environ: Any = os.environ, metrics: Registry | None = None
) -> Router:
    client = connect(settings.redis, connect_timeout_s=None)
    registry = FunctionRegistry(client, CodeStore(client, settings.prefix), prefix=settings.prefix)
    semaphore = Semaphore(
        client, settings.prefix, settings.account_concurrency, registry.reservations
    )
    keys = Keys(settings.prefix)
    metrics = metrics or Registry()
    return Router(
        lambda: Backbone(settings.amqp, keys, name="warren-router"),
        semaphore,
        CountedDestinations(settings, client, metrics),
        retry_policy(environ),
        max_chunk=_positive_int(environ, "WARREN_ROUTER_CHUNK", 100),
        metrics=RouterMetrics(metrics, ThrottleStore(client, settings.prefix)),
    )


DEFAULT_QUEUE_CONCURRENCY = 5  # Lambda starts an SQS mapping with 5 concurrent batches


def runner_concurrency(spec: MappingSpec, reserved: int | None) -> int:
    """Batches a mapping may run at once: a stream its parallelization factor, a schedule one,
    else its own cap; never more than the function's reserved concurrency (throttles would
    follow)."""
    if spec.kind == "schedule":
        return 1
    if spec.kind == "stream":
        limit = spec.parallelization_factor
    else:
        limit = spec.max_concurrency or DEFAULT_QUEUE_CONCURRENCY
    if reserved is not None:
        limit = min(limit, max(1, reserved))
    return limit


def build_poller(
    settings: Settings, *, lease_s: float = 8.0, poller_id: str | None = None,
    invoker_factory: Callable[[], Invoker] | None = None,
) -> Poller:
    """Compose a Poller whose runners read real sources and invoke through the fleet
    (or through `invoker_factory()`, e.g. an in-process PythonInvoker)."""
    client = connect(settings.redis, connect_timeout_s=None)
    store = MappingStore(client, settings.prefix, purge=purge_source)
    registry = FunctionRegistry(client, CodeStore(client, settings.prefix), prefix=settings.prefix)

    def dispatcher() -> Dispatcher:
        # The batch invokes take their results from Redis unless WARREN_MAPPING_SYNC_REPLY=amqp:
        # one broker message less per batch (docs/mappings.md).
        own = connect(settings.redis)
        registry = FunctionRegistry(own, CodeStore(own, settings.prefix), prefix=settings.prefix,
                            account_concurrency=settings.account_concurrency)
        return Dispatcher(settings, registry, own, reply=settings.mapping_sync_reply)

    def fleet() -> Invoker:
        return FleetInvoker(dispatcher)

    invoker = invoker_factory or fleet

    def runner(spec: MappingSpec, poller: str) -> BatchRunner:
        concurrency = runner_concurrency(spec, registry.get_concurrency(spec.function_name))

        def open_() -> Source:
            return open_source(
                spec.source, mapping_id=spec.uuid, start_position=spec.start_position,
                redis=client, prefix=settings.prefix,
                options={"consumer": poller, "batch_size": spec.batch_size,
                         "prefetch": max(1000, spec.batch_size * (concurrency + 2)),
                         "fastpath": settings.amqp.fastpath},
            )

        return BatchRunner(
            spec, open_, invoker(), store,
            destination=lambda uri: open_destination(uri, settings, client),
            concurrency=concurrency,
            function_arn=function_arn(spec.function),
        )

    return Poller(store, runner, lease_s=lease_s, poller_id=poller_id)


def build_topics(settings: Settings, client: Any = None, *, check_functions: bool = True) -> Topics:
    """Topics for the CLI and the client: Warren's Redis and a TopicBus on RabbitMQ."""
    client = client if client is not None else connect(settings.redis)
    functions = (
        FunctionRegistry(client, CodeStore(client, settings.prefix), prefix=settings.prefix)
        if check_functions else None
    )
    return Topics(TopicStore(client, settings.prefix),
                  TopicBus(settings.amqp, Keys(settings.prefix)), functions)


def build_relay(settings: Settings) -> TopicRelay:
    """The topic relay `warren router` runs beside the router."""
    client = connect(settings.redis, connect_timeout_s=None)
    keys = Keys(settings.prefix)

    def dispatcher() -> Dispatcher:
        own = connect(settings.redis)
        registry = FunctionRegistry(own, CodeStore(own, settings.prefix),
                                    prefix=settings.prefix,
                                    account_concurrency=settings.account_concurrency)
        return Dispatcher(settings, registry, own)

    return TopicRelay(
        lambda: Backbone(settings.amqp, keys, name="warren-topic-relay"),
        lambda: TopicBus(settings.amqp, keys),
        TopicStore(client, settings.prefix),
        dispatcher,
    )
