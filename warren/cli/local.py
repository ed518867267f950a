"""`warren local invoke`: run one invocation of a handler in a sandbox on this machine."""

from __future__ import annotations

import os
import sys

import click
import orjson

from warren.cli.invoke import read_payload
from warren.errors import InvalidParameter


def _parse_env(pairs: tuple[str, ...]) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not K=V", param_hint="--env")
        env[key] = value
    return env


def _event_bytes(payload: str | None) -> bytes:
    data = read_payload(payload)
    if data is None:
        return b"{}"
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        message = f"the payload is not valid JSON ({exc})"
        raise click.BadParameter(message, param_hint="--payload") from None
    return data


@click.group("local")
def local_group() -> None:
    """Run handlers on this machine, without a broker or a fleet."""


@local_group.command("invoke")
@click.argument("code_dir", type=click.Path(exists=True, file_okay=False, readable=True))
@click.option("--handler", required=True, help="module.function, as Lambda's handler setting.")
@click.option("--runtime", default=None,
              help="python3.N (this interpreter's), nodejs20.x, provided.al2023, ... "
                   "[default: this Python]")
@click.option("--payload", help="The event: JSON text, @file or - for stdin [default: {}].")
@click.option("--memory", type=click.IntRange(128, 10240), default=128, show_default=True,
              help="Memory limit in MB.")
@click.option("--timeout", type=click.IntRange(1, 900), default=3, show_default=True,
              help="Timeout in seconds.")
@click.option("--env", "env_pairs", multiple=True, metavar="K=V",
              help="A function environment variable (repeatable).")
@click.option("--output", type=click.Choice(["text", "json"]), default="text", show_default=True,
              help="text: result on stdout, logs on stderr; json: the whole outcome.")
@click.option("--ephemeral-storage", type=click.IntRange(512, 10240), default=512,
              show_default=True, help="Its /tmp in MB, capped apart from memory.")
@click.option("--network", type=click.Choice(["default", "none"]), default="default",
              show_default=True, help="none: the handler gets no network at all.")
def invoke_command(
    code_dir: str,
    handler: str,
    runtime: str | None,
    payload: str | None,
    memory: int,
    timeout: int,
    env_pairs: tuple[str, ...],
    output: str,
    network: str,
    ephemeral_storage: int,
) -> None:
    """Run the --handler in CODE_DIR once in a sandbox; exit status 1 if the invocation fails."""
    from sandbox import Isolation, Sandbox

    env = _parse_env(env_pairs)
    event = _event_bytes(payload)
    iso = Isolation.from_environ(os.environ)  # WARREN_SANDBOX_UID_BASE/_COUNT
    try:
        sb = Sandbox(code_dir, handler=handler, memory_mb=memory, timeout_s=timeout, env=env,
                     isolation=iso, runtime=runtime, network=network,
                     ephemeral_storage_mb=ephemeral_storage)
    except InvalidParameter as exc:
        raise click.BadParameter(str(exc), param_hint="--runtime") from None
    with sb:
        outcome = sb.invoke(payload=event)
    if output == "json":
        click.echo(orjson.dumps(outcome.as_dict(), option=orjson.OPT_INDENT_2).decode())
    else:
        click.echo(outcome.logs, err=True, nl=False)
        click.echo(outcome.result_json.decode("utf-8", "replace"))
    if not outcome.ok:
        sys.exit(1)


COMMANDS = [local_group]
