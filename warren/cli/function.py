"""`warren function ...`: create, update, inspect, list, delete and publish functions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from warren.cli.complete import function_names
from warren.cli.output import echo, output_option
from warren.client import Client
from warren.function import DEFAULT_POOL, FunctionSpec
from warren.keys import Keys

F = TypeVar("F", bound=Callable[..., Any])


def make_client(ctx: click.Context) -> Client:
    """A Client from the root's settings, closed when the command ends."""
    client = Client.from_settings(ctx.find_root().obj.settings)
    ctx.call_on_close(client.close)
    return client


def warn_if_unrunnable(client: Client, spec: FunctionSpec) -> None:
    """Say so when live workers of the function's pool advertise runtimes and none has its own.

    Not refused: workers come and go, and one that can run it may be started later.
    """
    seen: set[str] = set()
    for key in client.redis.scan_iter(Keys(client.settings.prefix).workers_pattern):
        fields = client.redis.hmget(key, "pool", "runtimes")
        pool, runtimes = (v.decode() if isinstance(v, bytes) else v for v in fields)
        if runtimes and (pool or DEFAULT_POOL) == spec.pool:
            seen.update(runtimes.split(","))
    if seen and spec.runtime not in seen:
        click.echo(
            f"warning: no live worker of pool {spec.pool!r} can run {spec.runtime} (they run "
            f"{', '.join(sorted(seen))}): its invocations fail until one that can is started",
            err=True,
        )


def parse_pairs(values: tuple[str, ...], what: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not {what}=VALUE")
        pairs[key] = value
    return pairs


def split_qualified(name: str) -> tuple[str, str | None]:
    """`NAME[:QUALIFIER]` -> (name, qualifier or None)."""
    base, sep, qualifier = name.partition(":")
    if sep and not qualifier:
        raise click.BadParameter(f"{name!r} has an empty qualifier: use NAME or NAME:QUALIFIER")
    return base, qualifier or None


def function_view(spec: FunctionSpec, concurrency: int | None) -> dict[str, Any]:
    view = spec.to_dict()
    view["arn"] = spec.arn
    view["concurrency"] = concurrency
    view.setdefault("network", spec.network)
    view.setdefault("ephemeral_storage_mb", spec.ephemeral_storage_mb)
    return view


def _layers_option(
    _ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
) -> list[str] | None:
    """`--layers a:1,b:2` or `--layers a:1 --layers b:2`; none given -> None (unchanged)."""
    if not values:
        return None
    return [ref for value in values for ref in value.split(",") if ref.strip()]


def _settings_options(create: bool) -> Callable[[F], F]:
    """The flags `create` and `update` share; on update every default is "unchanged"."""

    def default(value: Any) -> Any:
        return value if create else None

    options = [
        click.option("--code", type=click.Path(exists=True, path_type=Path), required=create,
                     help="A directory (zipped deterministically) or a .zip file."),
        click.option("--handler", required=create, help="module.function, e.g. app.handler."),
        click.option("--runtime", default=default("python3.11"), show_default=create,
                     help="python3.N"),
        click.option("--memory", "memory_mb", type=int, default=default(128),
                     show_default=create, help="Memory in MB (128-10240)."),
        click.option("--timeout", "timeout_s", type=int, default=default(3),
                     show_default=create, help="Timeout in seconds (1-900)."),
        click.option("--env", "env", multiple=True, metavar="K=V",
                     help="An environment variable; repeat for more."
                     + ("" if create else " Replaces the whole set.")),
        click.option("--description", default=default(""), help="Free text (256 chars)."),
        click.option("--concurrency", type=int, default=None,
                     help="Reserved concurrency (0 disables the function)."),
        click.option("--max-retries", type=int, default=default(2), show_default=create,
                     help="Async retries on function error (0-2)."),
        click.option("--max-event-age", "max_event_age_s", type=int, default=default(21600),
                     show_default=create, help="Async event age limit in seconds (60-21600)."),
        click.option("--on-success", default=None, metavar="DEST",
                     help="amqp:///QUEUE or redis+stream:///STREAM"
                     + ("" if create else "; '' clears it.")),
        click.option("--on-failure", default=None, metavar="DEST",
                     help="amqp:///QUEUE or redis+stream:///STREAM"
                     + ("" if create else "; '' clears it.")),
        click.option("--pool", default=default(DEFAULT_POOL), show_default=create, metavar="NAME",
                     help="The worker pool that runs it (workers started with --pool NAME)."),
        click.option("--layers", "layers", multiple=True, metavar="NAME:VERSION",
                     callback=_layers_option, help="Layers merged under /opt in order (at most "
                     "5); repeat or separate with commas" + ("." if create else "; '' clears.")),
        click.option("--ephemeral-storage", "ephemeral_storage_mb", type=int,
                     default=default(512), show_default=create,
                     help="Its /tmp in MB (512-10240), capped, apart from memory."),
        click.option("--network", type=click.Choice(["default", "none"]),
                     default=default("default"), show_default=create,
                     help="none: the handler gets no network at all."),
    ]
    if not create:
        options.append(click.option("--clear-env", is_flag=True,
                                    help="Remove every environment variable."))

    def decorate(func: F) -> F:
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


@click.group("function")
def function_group() -> None:
    """Create, change, inspect, list, delete and publish functions."""


@function_group.command("create")
@click.argument("name")
@_settings_options(create=True)
@output_option
@click.pass_context
def create(
    ctx: click.Context, /, name: str, env: tuple[str, ...], output: str, **options: Any
) -> None:
    """Register NAME with its code and settings as $LATEST."""
    client = make_client(ctx)
    options["layers"] = options["layers"] or ()
    spec = client.create_function(name, env=parse_pairs(env, "K"), **options)
    warn_if_unrunnable(client, spec)
    echo(function_view(spec, client.get_concurrency(name)), output)


@function_group.command("update")
@click.argument("name", shell_complete=function_names)
@_settings_options(create=False)
@output_option
@click.pass_context
def update(
    ctx: click.Context, /, name: str, env: tuple[str, ...], clear_env: bool, output: str,
    **options: Any,
) -> None:
    """Change $LATEST of NAME; flags not given stay as they are."""
    if clear_env and env:
        raise click.UsageError("use either --env or --clear-env, not both")
    new_env = {} if clear_env else (parse_pairs(env, "K") if env else None)
    client = make_client(ctx)
    spec = client.update_function(name, env=new_env, **options)
    warn_if_unrunnable(client, spec)
    echo(function_view(spec, client.get_concurrency(name)), output)


@function_group.command("get")
@click.argument("name", shell_complete=function_names)
@output_option
@click.pass_context
def get(ctx: click.Context, name: str, output: str) -> None:
    """Show NAME[:QUALIFIER] ($LATEST, a version, or an alias's version)."""
    base, qualifier = split_qualified(name)
    client = make_client(ctx)
    spec = client.get_function(base, qualifier)
    view = function_view(spec, client.get_concurrency(base))
    provisioned = client.provisioned_status(base, qualifier)
    if provisioned:  # requested / allocated / ready / state of each config
        view["provisioned"] = provisioned
    echo(view, output)


@function_group.command("list")
@output_option
@click.pass_context
def list_(ctx: click.Context, output: str) -> None:
    """List every function ($LATEST)."""
    client = make_client(ctx)
    reservations = client.registry.reservations()
    specs = client.list_functions()
    if output != "table":
        echo([function_view(s, reservations.get(s.name)) for s in specs], output)
        return
    echo(
        [
            {
                "name": s.name,
                "runtime": s.runtime,
                "handler": s.handler,
                "memory_mb": s.memory_mb,
                "timeout_s": s.timeout_s,
                "concurrency": reservations.get(s.name),
                "code_size": s.code_size,
                "last_modified": s.last_modified,
            }
            for s in specs
        ],
        output,
    )


@function_group.command("versions")
@click.argument("name", shell_complete=function_names)
@output_option
@click.pass_context
def versions(ctx: click.Context, name: str, output: str) -> None:
    """List $LATEST and every published version of NAME."""
    specs = make_client(ctx).list_versions(name)
    if output != "table":
        echo([s.to_dict() for s in specs], output)
        return
    echo(
        [
            {
                "version": s.version,
                "code_sha256": s.code_sha256[:12],
                "handler": s.handler,
                "memory_mb": s.memory_mb,
                "timeout_s": s.timeout_s,
                "description": s.description,
                "last_modified": s.last_modified,
            }
            for s in specs
        ],
        output,
    )


@function_group.command("delete")
@click.argument("name", shell_complete=function_names)
@click.pass_context
def delete(ctx: click.Context, name: str) -> None:
    """Delete NAME with all its versions, aliases and its reservation."""
    make_client(ctx).delete_function(name)
    click.echo(f"Deleted function {name}")


@function_group.command("publish")
@click.argument("name", shell_complete=function_names)
@click.option("--description", default="", help="Overrides the function's description.")
@output_option
@click.pass_context
def publish(ctx: click.Context, name: str, description: str, output: str) -> None:
    """Snapshot $LATEST as the next immutable version (none if nothing changed)."""
    client = make_client(ctx)
    spec = client.publish_version(name, description)
    echo(function_view(spec, client.get_concurrency(name)), output)


COMMANDS = [function_group]
