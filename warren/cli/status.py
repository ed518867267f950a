"""`warren status`: live workers, queue depths, in-flight executions per function (and mappings)."""

from __future__ import annotations

import time
from typing import Any

import click
import orjson
import redis

from broker_adapters.amqp import Backbone
from router.admission.semaphore import Semaphore
from warren.cli.output import output_option, render
from warren.keys import DEFAULT_POOL, Keys
from warren.settings import Settings
from warren.store.redis import redis_errors


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def fleet_status(settings: Settings, client: Any) -> dict[str, Any]:
    """The status document: {"workers": [...], "queues": [...], "functions": [...]}."""
    rdb: redis.Redis[bytes] = client.redis
    now = time.time()
    with redis_errors("fleet status", rdb):
        workers = []
        for key in sorted(rdb.scan_iter(Keys(settings.prefix).workers_pattern)):
            fields = {_text(k): _text(v) for k, v in rdb.hgetall(key).items()}
            if not fields:
                continue
            last = float(fields.get("last_heartbeat", 0))
            workers.append(
                {
                    "id": fields.get("id"),
                    "host": fields.get("host"),
                    "pid": int(fields.get("pid", 0)),
                    "pool": fields.get("pool"),
                    "slots": int(fields.get("slots", 0)),
                    "busy": int(fields.get("busy", 0)),
                    "warm": int(fields.get("warm", 0)),
                    "completed": int(fields.get("completed", 0)),
                    "runtimes": [r for r in fields.get("runtimes", "").split(",") if r],
                    "last_heartbeat": last,
                    "heartbeat_age_s": round(now - last, 2),
                }
            )
        registry = client.registry
        semaphore = Semaphore(
            rdb, settings.prefix, settings.account_concurrency, registry.reservations
        )
        in_flight = semaphore.in_flight()
        reservations = registry.reservations()
        functions = []
        pools = {DEFAULT_POOL} | {str(w["pool"]) for w in workers if w["pool"]}
        for spec in registry.list_functions():
            pools.add(spec.pool)
            stats = {
                _text(k): int(v)
                for k, v in rdb.hgetall(Keys(settings.prefix).stats(spec.name)).items()
            }
            functions.append(
                {
                    "name": spec.name,
                    "pool": spec.pool,
                    "reserved_concurrency": reservations.get(spec.name),
                    "in_flight": in_flight.get(spec.name, 0),
                    "invocations": stats.get("invocations", 0),
                    "errors": stats.get("errors", 0),
                }
            )
    keys = Keys(settings.prefix)
    backbone = Backbone(settings.amqp, keys, name="warren-status")
    try:
        queues = [
            {"name": name, "messages": backbone.depth(name)}
            for name in (
                keys.async_queue,
                *(keys.work_queue(pool) for pool in sorted(pools)),
                *(keys.sync_queue(pool) for pool in sorted(pools)),
                keys.dead_queue,
            )
        ]
    finally:
        backbone.close()
    status: dict[str, Any] = {"workers": workers, "queues": queues, "functions": functions,
                              "provisioned": client.provisioned_status()}
    mappings = _mappings(settings, rdb)
    if mappings is not None:
        status["mappings"] = mappings
    return status


def _mappings(settings: Settings, rdb: redis.Redis[bytes]) -> list[dict[str, Any]] | None:
    try:
        from warren.store.mappings import MappingStore
    except ImportError:
        return None
    try:
        return list(MappingStore(rdb, settings.prefix).summaries())
    except Exception:  # the mapping store is another room's; status must still answer
        return None


@click.command("status")
@output_option
@click.option("--watch", "-w", is_flag=True, help="Redraw every --interval seconds until Ctrl-C "
              "(json: one compact document per line).")
@click.option("--interval", type=click.FloatRange(0.2, 3600), default=2.0, show_default=True)
@click.pass_obj
def status_command(obj: Any, output: str, watch: bool, interval: float) -> None:
    """Live workers, queue depths and in-flight executions per function."""
    from warren.client import Client

    with Client.from_settings(obj.settings) as client:
        if not watch:
            _show(fleet_status(obj.settings, client), output)
            return
        try:
            while True:
                status = fleet_status(obj.settings, client)
                if output == "json":
                    click.echo(orjson.dumps(status, option=orjson.OPT_NON_STR_KEYS).decode())
                else:
                    click.clear()
                    click.echo(time.strftime("%Y-%m-%d %H:%M:%S  (Ctrl-C to stop)\n"))
                    _show(status, output)
                time.sleep(interval)
        except KeyboardInterrupt:
            return


def _show(status: dict[str, Any], output: str) -> None:
    if output != "table":
        click.echo(render(status, output))
        return
    for section in ("workers", "queues", "functions", "provisioned", "mappings"):
        if section in status:
            click.echo(f"{section.upper()}")
            click.echo(render(status[section], "table"))
            click.echo("")


COMMANDS = [status_command]
