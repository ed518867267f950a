"""`warren worker`, `warren router` and `warren up`: the fleet's long-running processes."""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import redis

from broker_adapters.backbone import Backbone
from broker_adapters.topology import DEFAULT_POOL, Topology
from router.destination import DestinationSet
from router.retry import RetryPolicy
from router.router import Router
from router.semaphore import Semaphore
from warren.codestore import CodeStore
from warren.errors import ConfigError
from warren.logstore import LogStore
from warren.registry import Registry
from warren.settings import Settings
from workers.codecache import DEFAULT_TTL_S, MIN_TTL_S, CodeCache
from workers.completion import Completion
from workers.executor import Executor
from workers.heartbeat import Heartbeat
from workers.pool import SandboxPool, WarmSandbox
from workers.worker import Worker, WorkerConfig

DEFAULT_CACHE = "/var/tmp/warren/code"


def retry_policy(environ: dict[str, str] | os._Environ[str]) -> RetryPolicy:
    """WARREN_ASYNC_RETRY_DELAYS ('60,120' s, Lambda's) and WARREN_THROTTLE_DELAY_MS (500)."""
    delays = RetryPolicy.parse_delays(environ.get("WARREN_ASYNC_RETRY_DELAYS", "60,120"))
    raw = environ.get("WARREN_THROTTLE_DELAY_MS", "500")
    try:
        throttle_ms = int(raw)
    except ValueError:
        raise ConfigError(f"WARREN_THROTTLE_DELAY_MS must be milliseconds, got {raw!r}") from None
    return RetryPolicy(delays_s=delays, throttle_delay_s=max(1, throttle_ms) / 1000)


def _positive_int(environ: Any, name: str, default: int) -> int:
    raw = environ.get(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{name} must be a positive whole number, got {raw!r}")
    return value


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(_signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return stop


def _logging() -> None:
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s"
    )
    logging.getLogger("pika").setLevel(logging.WARNING)
    # `kill -USR1 <pid>` dumps every thread's stack: how a stuck process is diagnosed.
    faulthandler.register(signal.SIGUSR1, all_threads=True)


def _sandbox(spec: Any, code_dir: Path, isolation: Any = None) -> WarmSandbox:
    from sandbox import Sandbox

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
    )
    return sandbox


def _connector(settings: Settings) -> Callable[[str], Backbone]:
    topology = Topology(settings.prefix)
    return lambda name: Backbone(settings.amqp, topology, name=name)


def build_worker(settings: Settings, config: WorkerConfig, policy: RetryPolicy) -> Worker:
    from sandbox import Isolation

    isolation = Isolation.from_environ(os.environ)  # WARREN_SANDBOX_UID_BASE/_COUNT, checked now
    client = redis.Redis.from_url(settings.redis.url)
    registry = Registry(client, CodeStore(client, settings.prefix), prefix=settings.prefix)
    semaphore = Semaphore(
        client, settings.prefix, settings.account_concurrency, registry.reservations
    )
    pool = SandboxPool(
        lambda spec, code_dir: _sandbox(spec, code_dir, isolation),
        max_idle=config.max_idle or 2 * config.slots,
        idle_s=config.idle_s,
    )
    executor = Executor(
        pool,
        CodeCache(CodeStore(client, settings.prefix), config.cache_dir, config.cache_ttl_s),
        semaphore,
    )
    completion = Completion(
        client,
        settings.prefix,
        semaphore,
        LogStore(client, settings.prefix),
        DestinationSet(settings, client),
        policy,
    )
    return Worker(config, _connector(settings), executor, completion)


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
@click.pass_obj
def worker_command(
    obj: Any, slots: int, pool_name: str, cache_dir: Path, cache_ttl_h: float
) -> None:
    """Run invocations in warm sandboxes; SIGTERM drains and exits 0."""
    _logging()
    settings: Settings = obj.settings
    config = WorkerConfig(
        slots=slots, pool=pool_name, cache_dir=cache_dir, cache_ttl_s=cache_ttl_h * 3600
    )
    worker = build_worker(settings, config, retry_policy(os.environ))
    client = redis.Redis.from_url(settings.redis.url)
    heartbeat = Heartbeat(client, settings.prefix, config.worker_id, worker.status)
    stop = _stop_on_signals()
    heartbeat.start()
    logging.getLogger("warren.worker").info(
        "worker %s: %d slots, pool %s, prefix %s",
        config.worker_id,
        slots,
        pool_name,
        settings.prefix,
    )
    try:
        worker.run(stop)
    finally:
        heartbeat.stop()


@click.command("router")
@click.pass_obj
def router_command(obj: Any) -> None:
    """Admit async invocations under concurrency and forward them to the workers."""
    _logging()
    settings: Settings = obj.settings
    client = redis.Redis.from_url(settings.redis.url)
    registry = Registry(client, CodeStore(client, settings.prefix), prefix=settings.prefix)
    semaphore = Semaphore(
        client, settings.prefix, settings.account_concurrency, registry.reservations
    )
    topology = Topology(settings.prefix)
    router = Router(
        lambda: Backbone(settings.amqp, topology, name="warren-router"),
        semaphore,
        DestinationSet(settings, client),
        retry_policy(os.environ),
        max_chunk=_positive_int(os.environ, "WARREN_ROUTER_CHUNK", 100),
    )
    stop = _stop_on_signals()
    logging.getLogger("warren.router").info("router: prefix %s", settings.prefix)
    router.run(stop)


#: Extra `warren` subcommands `warren up` runs beside the router and the worker. A module that
#: adds a long-running command appends its argv here (the `poller` is also picked up by name).
UP_EXTRA: list[list[str]] = []


def _up_argvs(ctx: click.Context, slots: int) -> list[list[str]]:
    argvs = [["router"], ["worker", "--slots", str(slots)]]
    root = ctx.find_root().command
    if isinstance(root, click.Group) and root.get_command(ctx, "poller") is not None:
        argvs.append(["poller"])
    return argvs + [argv for argv in UP_EXTRA if argv not in argvs]


@click.command("up")
@click.option("--slots", type=click.IntRange(1, 256), default=2, show_default=True)
@click.pass_context
def up_command(ctx: click.Context, slots: int) -> None:
    """Router, worker (and poller) in one foreground process tree.

    Ctrl-C (or SIGTERM) drains them: they take no more work and finish what they run, as long
    as the longest timeout; a second Ctrl-C stops them at once (work taken and not finished
    goes back to its queue). Exits 0 after a drain, 1 after a forced stop.
    """
    settings: Settings = ctx.obj.settings
    env = {
        **os.environ,
        "WARREN_AMQP_URL": settings.amqp.url,
        "WARREN_REDIS_URL": settings.redis.url,
    }
    argvs = _up_argvs(ctx, slots)
    procs: dict[int, subprocess.Popen[bytes]] = {}

    def start(index: int) -> None:
        procs[index] = subprocess.Popen([sys.executable, "-m", "warren", *argvs[index]], env=env)

    for index in range(len(argvs)):
        start(index)
    click.echo(f"warren up: {', '.join(a[0] for a in argvs)} (prefix {settings.prefix})", err=True)
    stop = _stop_on_signals()
    while not stop.wait(0.5):
        for index, proc in list(procs.items()):
            if proc.poll() is not None:
                click.echo(
                    f"warren up: {argvs[index][0]} exited ({proc.returncode}); restarting", err=True
                )
                time.sleep(1.0)
                start(index)
    if not _drain(procs, argvs):
        raise SystemExit(1)


UP_DRAIN_LIMIT_S = 900.0 + 60.0  # the longest timeout, and time to finish, ack and exit
UP_NOTE_EVERY_S = 10.0


def _drain(procs: dict[int, subprocess.Popen[bytes]], argvs: list[list[str]]) -> bool:
    """SIGTERM the children and wait while they finish what they run; a second Ctrl-C (or
    SIGTERM) kills them at once. True when all of them exited on their own."""
    again = threading.Event()
    signal.signal(signal.SIGTERM, lambda _s, _f: again.set())
    signal.signal(signal.SIGINT, lambda _s, _f: again.set())
    for proc in procs.values():
        proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + UP_DRAIN_LIMIT_S
    note_at = time.monotonic() + UP_NOTE_EVERY_S
    while True:
        running = [argvs[i][0] for i, proc in procs.items() if proc.poll() is None]
        if not running:
            return True
        if again.wait(0.2) or time.monotonic() > deadline:
            break
        if time.monotonic() > note_at:
            click.echo(
                f"warren up: waiting for {', '.join(running)} to finish the work it runs "
                "(Ctrl-C again to stop now)",
                err=True,
            )
            note_at += UP_NOTE_EVERY_S
    for proc in procs.values():
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    click.echo(
        f"warren up: killed {', '.join(running)} before it finished; work it had taken and "
        "not acked goes back to its queue",
        err=True,
    )
    return False


COMMANDS = [worker_command, router_command, up_command]
