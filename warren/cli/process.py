"""`warren worker`, `warren router`, `warren poller` and `warren up`: the fleet's processes.

Each command parses its options, builds its process in `warren.cli.compose`, and runs it.
"""

from __future__ import annotations

import faulthandler
import gc
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import click

from warren.cli import probes
from warren.cli.compose import (
    build_poller,
    build_provisioner,
    build_relay,
    build_router,
    build_worker,
    retry_policy,
)
from warren.cli.probes import metrics_port_option
from warren.cli.root import Root
from warren.keys import DEFAULT_POOL
from warren.observe.mappings import mapping_collector
from warren.observe.metrics import Registry
from warren.settings import Settings
from warren.store.redis import connect
from workers.codecache import DEFAULT_TTL_S, MIN_TTL_S
from workers.heartbeat import Heartbeat
from workers.metrics import WorkerMetrics, provisioned_collector
from workers.supervisor import Supervisor
from workers.worker import WorkerConfig

DEFAULT_CACHE = "/var/tmp/warren/code"


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT: every process drains on it."""
    stop = threading.Event()

    def handler(_signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def setup_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    logging.getLogger("pika").setLevel(logging.WARNING)
    logging.getLogger("botocore").setLevel(logging.WARNING)
    # `kill -USR1 <pid>` dumps every thread's stack: how a stuck process is diagnosed.
    faulthandler.register(signal.SIGUSR1, all_threads=True)



def settle_heap() -> None:
    """Before a long-running loop: what start-up made (modules, settings, connections) goes
    to the permanent generation, so the collector's full passes no longer walk it (a pause
    of milliseconds in a sync call's tail otherwise)."""
    gc.collect()
    gc.freeze()

@click.command("worker")
@click.option("--slots", type=click.IntRange(1, 256), default=2, show_default=True)
@click.option(
    "--pool", "pool_name", default=DEFAULT_POOL, show_default=True, help="Work queue pool."
)
@click.option(
    "--cache-dir",
    type=click.Path(path_type=Path),
    default=DEFAULT_CACHE,
    show_default=True,
    help="Where code bundles are unpacked (may be shared by the workers of one machine).",
)
@click.option(
    "--cache-ttl",
    "cache_ttl_h",
    type=click.FloatRange(min=MIN_TTL_S / 3600),
    default=DEFAULT_TTL_S / 3600,
    show_default=True,
    help="Hours a code bundle may go unused before it is removed from the cache dir.",
)
@metrics_port_option
@click.option("--log-stdout", is_flag=True,
              help="Also print invocation logs to stdout as Lambda's JSON log lines.")
@click.pass_obj
def worker_command(
    obj: Root, slots: int, pool_name: str, cache_dir: Path, cache_ttl_h: float, metrics_port: int,
    log_stdout: bool,
) -> None:
    """Run invocations in warm sandboxes; SIGTERM drains and exits 0."""
    setup_logging()
    settings: Settings = obj.settings
    config = WorkerConfig(
        slots=slots, pool=pool_name, cache_dir=cache_dir, cache_ttl_s=cache_ttl_h * 3600
    )
    registry = Registry()
    metrics = WorkerMetrics(registry) if metrics_port else None
    worker = build_worker(settings, config, retry_policy(os.environ), metrics, log_stdout)
    if metrics is not None:
        metrics.slots_collector(worker.status)
        provisioned_collector(registry, worker.executor.pool.reserve)
        deps = probes.dependencies(settings)

        def ready() -> list[str]:
            return deps() + ([] if worker.consuming() else ["no slot consumes its queue yet"])

        probes.start(metrics_port, registry, ready)
    client = connect(settings.redis, connect_timeout_s=None)
    from sandbox.runtimes import available

    runnable = ",".join(available())  # advertised, so `warren status` shows who runs what
    heartbeat = Heartbeat(
        client, settings.prefix, config.worker_id, lambda: {**worker.status(), "runtimes": runnable}
    )
    stop = stop_on_signals()
    heartbeat.start()
    provisioner = build_provisioner(settings, config, worker)
    provisioner.start(stop)
    logging.getLogger("warren.worker").info(
        "worker %s: %d slots, pool %s, prefix %s",
        config.worker_id,
        slots,
        pool_name,
        settings.prefix,
    )
    settle_heap()
    try:
        worker.run(stop)
    finally:
        stop.set()
        provisioner.join()
        heartbeat.stop()


@click.command("router")
@metrics_port_option
@click.pass_obj
def router_command(obj: Root, metrics_port: int) -> None:
    """Admit async invocations under concurrency and forward them to the workers; relay
    topics' messages to their subscribed functions."""
    setup_logging()
    settings: Settings = obj.settings
    registry = Registry()
    router = build_router(settings, metrics=registry)
    relay = build_relay(settings)
    probes.start(metrics_port, registry, probes.dependencies(settings))
    stop = stop_on_signals()
    logging.getLogger("warren.router").info("router: prefix %s", settings.prefix)
    # Topics' subscriptions become async invocations here too (router/relay.py).
    relaying = threading.Thread(target=relay.run, args=(stop,), name="topic-relay", daemon=True)
    relaying.start()
    settle_heap()
    router.run(stop)
    relaying.join(timeout=10)


@click.command("poller")
@click.option("--lease", "lease_s", type=click.FloatRange(2, 60), default=8.0, show_default=True,
              help="Seconds before a dead poller's mappings are taken over.")
@metrics_port_option
@click.pass_obj
def poller_command(obj: Root, lease_s: float, metrics_port: int) -> None:
    """Run enabled mappings: each on exactly one poller of the fleet; SIGTERM drains and exits."""
    setup_logging()
    settings: Settings = obj.settings
    stop = stop_on_signals()
    poller = build_poller(settings, lease_s=lease_s)
    if metrics_port:
        registry = Registry()
        mapping_collector(registry, poller.store, lambda: poller.owned)
        probes.start(metrics_port, registry, probes.dependencies(settings))
    click.echo(f"warren poller {poller.id}: prefix {settings.prefix}", err=True)
    settle_heap()
    poller.run(stop)


@click.command("up")
@click.option("--slots", type=click.IntRange(1, 256), default=2, show_default=True)
@click.option("--metrics-port", type=click.IntRange(0, 65533), default=0, show_default=True,
              help="Router's /metrics port; the worker takes the next, the poller the one after "
              "(0: off).")
@click.option("--log-stdout", is_flag=True,
              help="The worker also prints invocation logs as Lambda's JSON log lines.")
@click.pass_obj
def up_command(obj: Root, slots: int, metrics_port: int, log_stdout: bool) -> None:
    """Router, worker, poller and gateway (port 9600, or WARREN_GATEWAY_PORT) in one process tree.

    Ctrl-C (or SIGTERM) drains them: they take no more work and finish what they run, as long
    as the longest timeout; a second Ctrl-C stops them at once (work taken and not finished
    goes back to its queue). Exits 0 after a drain, 1 after a forced stop.
    """
    settings: Settings = obj.settings
    env = {
        **os.environ,
        "WARREN_AMQP_URL": settings.amqp.url,
        "WARREN_REDIS_URL": settings.redis.url,
    }
    argvs = [["router"], ["worker", "--slots", str(slots), *(["--log-stdout"] * log_stdout)],
             ["poller"]]
    if metrics_port:  # the gateway serves its fleet-wide /metrics on its own port
        for offset, argv in enumerate(argvs):
            argv += ["--metrics-port", str(metrics_port + offset)]
    argvs.append(["gateway"])
    say = lambda line: click.echo(line, err=True)  # noqa: E731
    tree = Supervisor([sys.executable, "-m", "warren"], argvs, env, say)
    tree.start()
    click.echo(f"warren up: {', '.join(tree.names())} (prefix {settings.prefix})", err=True)
    tree.watch(stop_on_signals())
    if not tree.drain():
        raise SystemExit(1)


COMMANDS = [worker_command, router_command, poller_command, up_command]
