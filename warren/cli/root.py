"""What every `warren` command receives: the group that maps errors to exit codes, and the
settings root."""

from __future__ import annotations

import importlib
import os
from typing import Any

import click

from warren.errors import (
    ConfigError,
    InvalidParameter,
    NotFound,
    TooManyRequests,
    Unavailable,
    WarrenError,
)
from warren.settings import Settings

EXIT_FUNCTION_ERROR = 1  # the handler failed (invoke); the error object is printed
EXIT_USAGE = 2  # a bad option, argument, setting or parameter (click's own code for these)
EXIT_NOT_FOUND = 3  # a function, version, alias or mapping that does not exist
EXIT_THROTTLED = 4  # TooManyRequestsException: over the concurrency limit
EXIT_UNAVAILABLE = 5  # the fleet cannot serve: Redis or RabbitMQ unreachable, no live worker
EXIT_FAILED = 6  # anything else Warren refused or could not do (a conflict, a bad bundle, ...)

EXIT_CODES_HELP = (
    "Exit codes: 0 ok; 1 function error; 2 usage error; 3 not found; 4 throttled (429); "
    "5 fleet unavailable (Redis or RabbitMQ unreachable, or no live worker for the pool); "
    "6 other failure."
)


def exit_code(exc: WarrenError) -> int:
    if isinstance(exc, (ConfigError, InvalidParameter)):
        return EXIT_USAGE
    if isinstance(exc, NotFound):
        return EXIT_NOT_FOUND
    if isinstance(exc, TooManyRequests):
        return EXIT_THROTTLED
    if isinstance(exc, Unavailable):
        return EXIT_UNAVAILABLE
    return EXIT_FAILED


class WarrenGroup(click.Group):
    """A group that turns any WarrenError into one clear line on stderr and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except WarrenError as exc:
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exit_code(exc))


class LazyGroup(WarrenGroup):
    """A group whose commands are imported when they run, not when the group is built."""

    def __init__(self, *args: Any, lazy_commands: dict[str, tuple[str, str, str]], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.lazy_commands = lazy_commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.lazy_commands)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = self.lazy_commands.get(cmd_name)
        if entry is None:
            return None
        module = importlib.import_module(f"warren.cli.{entry[0]}")
        command: click.Command = getattr(module, entry[1])
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_text) for name, (_m, _a, help_text) in self.lazy_commands.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


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
