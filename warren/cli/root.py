"""What every `warren` command receives: the group that maps errors, and the settings root."""

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


pass_root = click.make_pass_decorator(Root)
