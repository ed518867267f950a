"""`warren alias ...`: named pointers to versions, optionally weighted over a second version."""

from __future__ import annotations

import click

from warren.cli.complete import function_names
from warren.cli.function import make_client
from warren.cli.output import echo, output_option
from warren.function import Alias


def parse_weight(value: str | None) -> dict[str, float] | None:
    """`--weight 2=0.1` -> {"2": 0.1}."""
    if value is None:
        return None
    version, sep, weight = value.partition("=")
    try:
        if not sep or not version:
            raise ValueError
        return {version: float(weight)}
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not VERSION=WEIGHT (e.g. 2=0.1)", param_hint="--weight"
        ) from None


def alias_view(alias: Alias) -> dict[str, object]:
    view = alias.to_dict()
    view["arn"] = alias.arn
    return view


@click.group("alias")
def alias_group() -> None:
    """Create, repoint, list and delete aliases."""


@alias_group.command("create")
@click.argument("name", shell_complete=function_names)
@click.argument("alias")
@click.option("--version", "version", required=True, help="The version the alias points to.")
@click.option("--weight", metavar="V2=W", help="Send fraction W (0.0-1.0) to version V2.")
@click.option("--description", default="")
@output_option
@click.pass_context
def create(
    ctx: click.Context, name: str, alias: str, version: str, weight: str | None,
    description: str, output: str,
) -> None:
    """Create ALIAS of function NAME."""
    record = make_client(ctx).create_alias(name, alias, version, parse_weight(weight), description)
    echo(alias_view(record), output)


@alias_group.command("update")
@click.argument("name", shell_complete=function_names)
@click.argument("alias")
@click.option("--version", "version", default=None, help="The new primary version.")
@click.option("--weight", metavar="V2=W", help="Send fraction W (0.0-1.0) to version V2.")
@click.option("--no-weight", is_flag=True, help="Remove the weighted second version.")
@click.option("--description", default=None)
@output_option
@click.pass_context
def update(
    ctx: click.Context, name: str, alias: str, version: str | None, weight: str | None,
    no_weight: bool, description: str | None, output: str,
) -> None:
    """Repoint ALIAS; options not given stay as they are."""
    if weight is not None and no_weight:
        raise click.UsageError("use either --weight or --no-weight, not both")
    weights = {} if no_weight else parse_weight(weight)
    record = make_client(ctx).update_alias(name, alias, version, weights, description)
    echo(alias_view(record), output)


@alias_group.command("get")
@click.argument("name", shell_complete=function_names)
@click.argument("alias")
@output_option
@click.pass_context
def get(ctx: click.Context, name: str, alias: str, output: str) -> None:
    """Show ALIAS of function NAME."""
    echo(alias_view(make_client(ctx).get_alias(name, alias)), output)


@alias_group.command("list")
@click.argument("name", shell_complete=function_names)
@output_option
@click.pass_context
def list_(ctx: click.Context, name: str, output: str) -> None:
    """List the aliases of function NAME."""
    echo([alias_view(a) for a in make_client(ctx).list_aliases(name)], output)


@alias_group.command("delete")
@click.argument("name", shell_complete=function_names)
@click.argument("alias")
@click.pass_context
def delete(ctx: click.Context, name: str, alias: str) -> None:
    """Delete ALIAS of function NAME."""
    make_client(ctx).delete_alias(name, alias)
    click.echo(f"Deleted alias {alias} of {name}")


COMMANDS = [alias_group]
