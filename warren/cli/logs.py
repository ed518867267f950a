"""`warren logs NAME [--follow] [--since 10m]`: the function's START…REPORT blocks from Redis."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

import click
import orjson

from warren.cli.complete import function_names
from warren.cli.output import output_option, render
from warren.logformat import records
from warren.store.logs import LogEntry, LogStore
from warren.store.redis import redis_errors

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str | None) -> float | None:
    """'90s', '10m', '2h', '1d' (or plain seconds) -> seconds."""
    if text is None:
        return None
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise click.BadParameter("use a duration like 30s, 10m, 2h or 1d", param_hint="--since")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _show(entry: LogEntry, function: str, output: str) -> None:
    if output != "table":
        for record in records(function, entry.request_id, entry.version, entry.text,
                              entry.timestamp):
            if output == "json":
                click.echo(orjson.dumps(record).decode())
            else:
                click.echo("---\n" + render(record, "yaml"))
        return
    stamp = datetime.fromtimestamp(entry.timestamp, timezone.utc).isoformat(timespec="milliseconds")
    for line in entry.text.rstrip("\n").splitlines():
        click.echo(f"{stamp} {line}")


@click.command("logs")
@click.argument("name", shell_complete=function_names)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new invocations' logs.")
@click.option("--since", help="Only logs newer than this (30s, 10m, 2h, 1d).")
@output_option
@click.pass_obj
def logs_command(obj: Any, name: str, follow: bool, since: str | None, output: str) -> None:
    """Print a function's invocation logs.

    `-o json`: one object per line in Lambda's JSON log format (docs/operate.md).
    """
    from warren.client import Client

    since_s = parse_since(since)
    with Client.from_settings(obj.settings) as client:
        client.get_function(name)  # an unknown function is a clear error, not silence
        store = LogStore(client.redis, obj.settings.prefix)
        with redis_errors("logs", client.redis):
            if not follow:
                for entry in store.read(name, since_s):
                    _show(entry, name, output)
                return
            try:
                for entry in store.follow(name, since_s):
                    _show(entry, name, output)
            except KeyboardInterrupt:
                return


COMMANDS = [logs_command]
