"""`warren concurrency ...`: a function's reserved concurrency (a guarantee and a hard ceiling)."""

from __future__ import annotations

import click

from warren.cli.complete import function_names
from warren.cli.function import make_client, split_qualified
from warren.cli.output import echo, output_option


@click.group("concurrency")
def concurrency_group() -> None:
    """Reserved concurrency (set, clear), provisioned concurrency (provision), and both (get)."""


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


@concurrency_group.command("provision")
@click.argument("target", metavar="NAME:QUALIFIER")
@click.argument("n", type=int, required=False)
@click.option("--clear", is_flag=True, help="Remove the config: its sandboxes are released.")
@click.pass_context
def provision(ctx: click.Context, target: str, n: int | None, clear: bool) -> None:
    """Keep N sandboxes of a published version or alias initialised ahead of traffic."""
    if clear == (n is not None):
        raise click.UsageError("give either N or --clear")
    name, qualifier = split_qualified(target)
    make_client(ctx).provision(name, qualifier, None if clear else n)
    if clear:
        click.echo(f"Cleared provisioned concurrency of {target}")
    else:
        click.echo(f"Provisioned concurrency of {target}: {n} (see `warren concurrency get`)")


@concurrency_group.command("get")
@click.argument("name", required=False, shell_complete=function_names)
@output_option
@click.pass_context
def get(ctx: click.Context, name: str | None, output: str) -> None:
    """Show NAME[:QUALIFIER]'s reservation and provisioned concurrency, or the account's."""
    client = make_client(ctx)
    if name is not None:
        base, qualifier = split_qualified(name)
        client.get_function(base)
        view = {"function": base, "reserved_concurrency": client.get_concurrency(base),
                "provisioned": client.provisioned_status(base, qualifier)}
        echo(view, output)
        return
    echo({**client.registry.reserved.summary(), "provisioned": client.provisioned_status()},
         output)


COMMANDS = [concurrency_group]
