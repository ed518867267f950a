"""`warren layer ...`: publish, inspect, list and delete layer versions."""

from __future__ import annotations

from pathlib import Path

import click

from warren.cli.function import make_client
from warren.cli.output import echo, output_option
from warren.layer import LayerVersion, parse_ref


def _row(layer: LayerVersion) -> dict[str, object]:
    return {
        "name": layer.name,
        "version": layer.version,
        "compatible_runtimes": ",".join(layer.compatible_runtimes) or None,
        "code_size": layer.code_size,
        "code_sha256": layer.code_sha256[:12],
        "created": layer.created,
    }


@click.group("layer")
def layer_group() -> None:
    """Publish, inspect, list and delete layers (code merged under a function's /opt)."""


@layer_group.command("publish")
@click.argument("name")
@click.option("--code", type=click.Path(exists=True, path_type=Path), required=True,
              help="A directory (zipped deterministically) or a .zip file.")
@click.option("--compatible-runtime", "runtimes", multiple=True, metavar="RUNTIME",
              help="A runtime it is meant for (listed, not enforced); repeat for more.")
@click.option("--description", default="", help="Free text (256 chars).")
@output_option
@click.pass_context
def publish(
    ctx: click.Context, name: str, code: Path, runtimes: tuple[str, ...], description: str,
    output: str,
) -> None:
    """Publish CODE as the next immutable version of layer NAME."""
    layer = make_client(ctx).registry.layers.publish(name, code, runtimes, description)
    echo(layer.to_dict(), output)


@layer_group.command("get")
@click.argument("ref", metavar="NAME:VERSION")
@output_option
@click.pass_context
def get(ctx: click.Context, ref: str, output: str) -> None:
    """Show one layer version."""
    name, version = parse_ref(ref)
    echo(make_client(ctx).registry.layers.get(name, version).to_dict(), output)


@layer_group.command("list")
@click.argument("name", required=False)
@output_option
@click.pass_context
def list_(ctx: click.Context, name: str | None, output: str) -> None:
    """The newest version of every layer, or every version of layer NAME."""
    store = make_client(ctx).registry.layers
    layers = store.latest() if name is None else store.versions(name)
    echo([x.to_dict() for x in layers] if output == "json" else [_row(x) for x in layers], output)


@layer_group.command("delete")
@click.argument("ref", metavar="NAME:VERSION")
@click.pass_context
def delete(ctx: click.Context, ref: str) -> None:
    """Delete a layer version; functions that use it keep running it."""
    name, version = parse_ref(ref)
    make_client(ctx).registry.layers.delete(name, version)
    click.echo(f"Deleted layer version {name}:{version}")


COMMANDS = [layer_group]
