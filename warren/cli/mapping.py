"""`warren mapping ...` (event source mappings) and `warren poller` (the process that runs them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click
import redis

from broker_adapters.sources import prepare_source, purge_source
from warren.cli.complete import mapping_ids
from warren.cli.output import echo, output_option
from warren.errors import InvalidParameter
from warren.mapping import MappingSpec
from warren.settings import Settings
from warren.store.mappings import MappingStore
from warren.store.redis import connect

F = TypeVar("F", bound=Callable[..., Any])


def _redis(ctx: click.Context) -> redis.Redis[bytes]:
    settings: Settings = ctx.find_root().obj.settings
    client = connect(settings.redis)
    ctx.call_on_close(client.close)
    return client


def _store(ctx: click.Context, check_functions: bool = False) -> MappingStore:
    settings: Settings = ctx.find_root().obj.settings
    client = _redis(ctx)
    functions = None
    if check_functions:
        from warren.store.codes import CodeStore
        from warren.store.registry import Registry

        functions = Registry(client, CodeStore(client, settings.prefix), prefix=settings.prefix)
    return MappingStore(client, settings.prefix, functions=functions, purge=purge_source,
                        prepare=prepare_source)


def view(store: MappingStore, spec: MappingSpec) -> dict[str, Any]:
    """A mapping as `get` shows it: its settings, Lambda's state, and its counters."""
    out = spec.to_dict()
    out["filters"] = list(spec.filters)
    out["stats"] = store.stats(spec.uuid) if spec.state != "Deleting" else {}
    return out


def _row(store: MappingStore, spec: MappingSpec) -> dict[str, Any]:
    stats = store.stats(spec.uuid)
    return {"uuid": spec.uuid, "function": spec.function, "source": spec.source,
            "state": spec.state, "batch": spec.batch_size, "read": stats["read"],
            "succeeded": stats["succeeded"], "failed": stats["failed"], "lag_s": stats["lag_s"]}


def _settings_options(create: bool) -> Callable[[F], F]:
    options = [
        click.option("--batch-size", type=int, default=None,
                     help="Records per batch (default 100 for streams and tables, 10 for queues, "
                     "1 for MQTT; max 10000)."),
        click.option("--window", "window_s", type=float, default=None,
                     help="Batching window in seconds, 0-300 (default 0)."),
        click.option("--filter", "filters", multiple=True, metavar="JSON",
                     help='A filter pattern, e.g. \'{"data": {"kind": ["order"]}}\'; repeat to OR.'
                     + ("" if create else " Replaces the set; --filter '' clears it.")),
        click.option("--report-item-failures/--no-report-item-failures", default=None,
                     help="Honour the handler's batchItemFailures."),
        click.option("--bisect/--no-bisect", default=None,
                     help="Split a failing batch in two and retry each half."),
        click.option("--max-retries", type=int, default=None,
                     help="Retries of a failing record, -1 (default) until it expires."),
        click.option("--max-age", "max_age_s", type=int, default=None,
                     help="Give up on records older than this, 60-604800 s; -1 (default) never."),
        click.option("--on-failure", default=None, metavar="DEST",
                     help="amqp:///QUEUE or redis+stream:///STREAM for given-up records"
                     + ("." if create else "; '' clears it.")),
        click.option("--max-concurrency", type=int, default=None,
                     help="Batches in flight at once, 2-1000 (queues and buckets)."),
        click.option("--parallelization-factor", type=int, default=None,
                     help="Streams: 1-10 batches in flight at once (default 1); records of "
                     "one partition key stay in order."),
    ]

    def apply(fn: F) -> F:
        for option in reversed(options):
            fn = option(fn)
        return fn

    return apply


def _changes(**given: Any) -> dict[str, Any]:
    changes = {k: v for k, v in given.items() if v is not None and k != "filters"}
    filters = given.get("filters")
    if filters:
        changes["filters"] = [f for f in filters if f.strip()]
    if changes.get("on_failure") == "":
        changes["on_failure"] = None
    return changes


@click.group("mapping")
def mapping_group() -> None:
    """Event source mappings: feed a function from a bucket, a stream, a queue, a schedule, a
    PostgreSQL table's changes or an MQTT topic filter."""


@mapping_group.command("create")
@click.option("--function", "function", required=True, metavar="NAME[:QUALIFIER]")
@click.option("--source", required=True, metavar="URI",
              help="s3://bucket/prefix?endpoint=..., redis+stream://host:port/db/stream, "
                   "amqp://user:pass@host:port/vhost/queue, schedule:rate(5 minutes), "
                   "postgres://user:pass@host:port/db?table=schema.name, "
                   "mqtt://user:pass@host:port/topic/#")
@click.option("--start-position", default="trim-horizon", show_default=True,
              help="trim-horizon | latest | at-timestamp:ISO8601")
@_settings_options(create=True)
@click.option("--disabled", is_flag=True, help="Create it Disabled.")
@output_option
@click.pass_context
def create_command(ctx: click.Context, /, function: str, source: str, start_position: str,
                   disabled: bool, output: str, **settings: Any) -> None:
    """Create a mapping (Lambda's CreateEventSourceMapping)."""
    store = _store(ctx, check_functions=True)
    changes = _changes(**settings)
    spec = store.create(function=function, source=source, start_position=start_position,
                        enabled=not disabled, **changes)
    echo(view(store, spec), output)


@mapping_group.command("list")
@click.option("--function", default=None, help="Only this function's mappings.")
@output_option
@click.pass_context
def list_command(ctx: click.Context, function: str | None, output: str) -> None:
    """List mappings with their state and counters."""
    store = _store(ctx)
    specs = store.list_mappings(function)
    if output != "table":
        echo([view(store, s) for s in specs], output)
    else:
        echo([_row(store, s) for s in specs], output)


@mapping_group.command("get")
@click.argument("uuid", shell_complete=mapping_ids)
@output_option
@click.pass_context
def get_command(ctx: click.Context, uuid: str, output: str) -> None:
    """One mapping: settings, state, records read/filtered/invoked/succeeded/failed, lag."""
    store = _store(ctx)
    echo(view(store, store.get(uuid)), output)


@mapping_group.command("update")
@click.argument("uuid", shell_complete=mapping_ids)
@click.option("--function", "function", default=None, metavar="NAME[:QUALIFIER]")
@_settings_options(create=False)
@output_option
@click.pass_context
def update_command(ctx: click.Context, /, uuid: str, output: str, **settings: Any) -> None:
    """Change a mapping's settings (the source and start position are fixed at creation)."""
    store = _store(ctx, check_functions=settings.get("function") is not None)
    changes = _changes(**settings)
    if not changes and not settings.get("filters"):
        raise InvalidParameter("nothing to update: give at least one option")
    if settings.get("filters") and "filters" not in changes:
        changes["filters"] = []
    echo(view(store, store.update(uuid, **changes)), output)


def _state_command(name: str, help_text: str) -> click.Command:
    @click.command(name, help=help_text)
    @click.argument("uuid", shell_complete=mapping_ids)
    @output_option
    @click.pass_context
    def command(ctx: click.Context, uuid: str, output: str) -> None:
        store = _store(ctx)
        spec = getattr(store, name)(uuid)
        echo(view(store, spec) if name != "delete" else spec.to_dict(), output)

    return command


for _name, _help in (("enable", "Resume polling (Enabling, then Enabled)."),
                     ("disable", "Pause polling; checkpoints are kept (Disabling, then Disabled)."),
                     ("delete", "Delete the mapping and its checkpoints (Deleting).")):
    mapping_group.add_command(_state_command(_name, _help))


COMMANDS = [mapping_group]
