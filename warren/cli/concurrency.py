"""`warren concurrency ...`: a function's reserved concurrency (a guarantee and a hard ceiling)."""

from __future__ import annotations

import click

from warren.cli.complete import function_names
from warren.cli.function import make_client
from warren.cli.output import echo, output_option


@click.group("concurrency")
def concurrency_group() -> None:
    """Reserve, clear and show reserved concurrency."""


@concurrency_group.command("set")
@click.argument("name", shell_complete=function_names)
@click.argument("n", type=int)
@click.pass_context
def set_(ctx: click.Context, name: str, n: int) -> None:
    """Reserve N concurrent executions for NAME (0 disables it)."""
    make_client(ctx).set_concurrency(name, n)
    click.echo(f"Reserved concurrency of {name}: {n}")


@concurrency_group.command("clear")
@click.argument("name", shell_complete=function_names)
@click.pass_context
def clear(ctx: click.Context, name: str) -> None:
    """Remove NAME's reservation: it shares the unreserved pool again."""
    make_client(ctx).clear_concurrency(name)
    click.echo(f"Cleared reserved concurrency of {name}")


@concurrency_group.command("get")
@click.argument("name", required=False, shell_complete=function_names)
@output_option
@click.pass_context
def get(ctx: click.Context, name: str | None, output: str) -> None:
    """Show NAME's reservation, or the account's reservations without NAME."""
    client = make_client(ctx)
    if name is not None:
        client.get_function(name)
        echo({"function": name, "reserved_concurrency": client.get_concurrency(name)}, output)
        return
    echo(client.registry.reserved.summary(), output)


COMMANDS = [concurrency_group]
