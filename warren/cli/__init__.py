"""The `warren` command line: the composition root that builds settings for the rooms."""

from __future__ import annotations

import click

from warren.cli import (
    alias,
    concurrency,
    function,
    invoke,
    layer,
    local,
    logs,
    mapping,
    process,
    status,
)
from warren.cli.root import Root, WarrenGroup


@click.group(cls=WarrenGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--amqp-url", envvar="WARREN_AMQP_URL", help="RabbitMQ URL [env WARREN_AMQP_URL].")
@click.option("--redis-url", envvar="WARREN_REDIS_URL", help="Redis URL [env WARREN_REDIS_URL].")
@click.version_option(package_name="warren")
@click.pass_context
def cli(ctx: click.Context, amqp_url: str | None, redis_url: str | None) -> None:
    """Warren: run Lambda handlers on machines you own.

    Functions are registered once and invoked from anywhere; a fleet of
    workers runs them in sandboxes under Lambda's limits and semantics.
    """
    ctx.obj = Root(amqp_url, redis_url)


# Every command module, named here: a module that fails to import fails `warren` loudly.
for _module in (local, function, layer, alias, concurrency, invoke, logs, status, mapping, process):
    for _command in _module.COMMANDS:
        cli.add_command(_command)


def main() -> None:
    cli.main(prog_name="warren", auto_envvar_prefix="WARREN")
