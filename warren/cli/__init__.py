"""The `warren` command line: the composition root that builds settings for the rooms."""

from __future__ import annotations

import os
from typing import Any

import click

from warren.errors import WarrenError
from warren.settings import Settings


class WarrenGroup(click.Group):
    """A group that turns any WarrenError into one clear line on stderr instead of a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except WarrenError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(1)


class Root:
    """What every command receives as ctx.obj: settings built once, on first use."""

    def __init__(self, amqp_url: str | None, redis_url: str | None) -> None:
        self._amqp_url = amqp_url
        self._redis_url = redis_url
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = Settings.from_environ(
                os.environ, amqp_url=self._amqp_url, redis_url=self._redis_url
            )
        return self._settings


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


def _register() -> None:
    # Each room's commands live in their own module exposing COMMANDS; a module that is not
    # written yet is simply absent.
    names = ("local", "function", "alias", "concurrency", "invoke", "logs", "status", "process")
    for name in (*names, "mapping", "gateway"):
        try:
            module = __import__(f"warren.cli.{name}", fromlist=["COMMANDS"])
        except ModuleNotFoundError as exc:
            if exc.name != f"warren.cli.{name}":
                raise
            continue
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main() -> None:
    cli.main(prog_name="warren", auto_envvar_prefix="WARREN")
