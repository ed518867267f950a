"""`warren invoke NAME[:QUALIFIER]`: sync, async or dry-run, as Lambda's Invoke."""

from __future__ import annotations

import sys
from typing import Any

import click

from warren.cli.complete import function_names
from warren.cli.output import output_option, render
from warren.cli.root import EXIT_FAILED, EXIT_FUNCTION_ERROR
from warren.codec import dumps_json
from warren.invocation import DRY_RUN, EVENT, REQUEST_RESPONSE


def read_payload(value: str | None) -> bytes | None:
    """`--payload JSON`, `@file` or `-` (stdin)."""
    if value is None:
        return None
    if value == "-":
        return sys.stdin.buffer.read()
    if value.startswith("@"):
        try:
            with open(value[1:], "rb") as handle:
                return handle.read()
        except OSError as exc:
            raise click.BadParameter(
                f"cannot read {value[1:]}: {exc.strerror}", param_hint="--payload"
            ) from None
    return value.encode()


def split_name(target: str) -> tuple[str, str | None]:
    name, _, qualifier = target.partition(":")
    if not name or (qualifier == "" and target.endswith(":")):
        raise click.BadParameter("use NAME or NAME:QUALIFIER", param_hint="NAME")
    return name, qualifier or None


@click.command("invoke")
@click.argument("target", metavar="NAME[:QUALIFIER]", shell_complete=function_names)
@click.option("--payload", help="The event: JSON text, @file or - for stdin.")
@click.option("--async", "is_async", is_flag=True, help="Invoke as an Event (202, runs later).")
@click.option("--dry-run", is_flag=True, help="Only check the function can be invoked (204).")
@click.option("--log-tail", is_flag=True, help="Return the last 4 KB of the log (to stderr).")
@output_option
@click.pass_obj
def invoke_command(
    obj: Any,
    target: str,
    payload: str | None,
    is_async: bool,
    dry_run: bool,
    log_tail: bool,
    output: str,
) -> None:
    """Invoke a function and print its result.

    Exits 1 on a function error (the error object is printed), 3 when the function does not
    exist, 4 when throttled (429), 5 when no live worker serves its pool or the fleet cannot be
    reached, 6 on a service error.
    """
    from warren.client import Client

    name, qualifier = split_name(target)
    kind = DRY_RUN if dry_run else EVENT if is_async else REQUEST_RESPONSE
    event = read_payload(payload)
    with Client.from_settings(obj.settings) as client:
        result = client.invoke(
            name, event, qualifier=qualifier, invocation_type=kind, log_tail=log_tail
        )
    if output != "table":
        click.echo(render(result.to_dict(), output))
    elif kind != REQUEST_RESPONSE:
        click.echo(dumps_json({"status_code": result.status_code, "request_id": result.request_id}))
    else:
        if log_tail and result.log_result:
            click.echo(result.logs, err=True, nl=False)
        click.echo(result.raw_payload.decode("utf-8", "replace") if result.raw_payload else "null")
    if result.function_error:
        sys.exit(EXIT_FUNCTION_ERROR)
    if result.status_code >= 400:
        sys.exit(EXIT_FAILED)


COMMANDS = [invoke_command]
