"""`warren gateway`, `warren key create|list|delete` and `warren url create|get|delete`."""

from __future__ import annotations

import os
from typing import Any

import click

from warren.cli.invoke import split_name
from warren.cli.output import echo, output_option
from warren.store.redis import connect


@click.command("gateway")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=9600, show_default=True,
              help="Port to listen on (0: any free port, printed at start).")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Processes serving the same socket.")
@click.option("--auth", type=click.Choice(["sigv4", "none"]), default="sigv4", show_default=True,
              help="sigv4: every API request signed with a `warren key`; none: no checks.")
@click.option("--public-url", default=None,
              help="Base of the FunctionUrl values handed out (default: the request's Host).")
@click.pass_obj
def gateway_command(
    obj: Any, host: str, port: int, workers: int, auth: str, public_url: str | None
) -> None:
    """Serve Lambda's HTTP API, function URLs, /healthz and /readyz."""
    from gateway.app import GatewayOptions
    from gateway.server import quiet_libraries, serve

    quiet_libraries()
    options = GatewayOptions(auth=auth, public_url=public_url.rstrip("/") if public_url else None)
    serve(obj.settings, options, host, port, workers)


# -- keys ------------------------------------------------------------------------------------
@click.group("key")
def key_group() -> None:
    """Access keys the gateway accepts (SigV4)."""


def _keys(obj: Any) -> Any:
    from warren.store.accesskeys import AccessKeys

    settings = obj.settings
    return AccessKeys(connect(settings.redis), settings.prefix)


@key_group.command("create")
@click.argument("name")
@output_option
@click.pass_obj
def key_create(obj: Any, name: str, output: str) -> None:
    """Create a key; its secret is printed this once and can't be shown again."""
    key, secret = _keys(obj).create(name)
    if output == "json":
        echo({"access_key_id": key.access_key_id, "secret_access_key": secret}, "json")
        return
    echo({"access_key_id": key.access_key_id, "secret_access_key": secret, "name": key.name})
    click.echo("The secret is shown only now: keep it (e.g. `aws configure`).", err=True)


@key_group.command("list")
@output_option
@click.pass_obj
def key_list(obj: Any, output: str) -> None:
    """Every key's id, name and creation time (never a secret)."""
    echo([key.to_dict() for key in _keys(obj).list()], output)


@key_group.command("delete")
@click.argument("key_id", metavar="ID")
@click.pass_obj
def key_delete(obj: Any, key_id: str) -> None:
    """Delete a key: requests signed with it are refused within a second."""
    _keys(obj).delete(key_id)
    click.echo(f"deleted {key_id}", err=True)


# -- function URLs ---------------------------------------------------------------------------
@click.group("url")
def url_group() -> None:
    """Function URLs: any HTTP request to one invokes the function (payload format 2.0)."""


def _urls(obj: Any) -> Any:
    from warren.store.urls import UrlStore

    settings = obj.settings
    return UrlStore(connect(settings.redis), None, settings.prefix)


def _target(name: str, qualifier: str | None) -> tuple[str, str | None]:
    base, named = split_name(name)
    if named and qualifier and named != qualifier:
        raise click.BadParameter("the qualifier in NAME and --qualifier differ")
    return base, named or qualifier


def _shape(config: Any, public_url: str | None) -> dict[str, Any]:
    from gateway.urls_api import shape

    if not public_url:  # the local gateway, on the port it would take
        public_url = f"http://127.0.0.1:{os.environ.get('WARREN_GATEWAY_PORT') or 9600}"
    return shape(config, public_url.rstrip("/"))


public_url_option = click.option(
    "--public-url",
    envvar="WARREN_GATEWAY_PUBLIC_URL",
    default=None,
    help="The gateway's address as clients see it [env WARREN_GATEWAY_PUBLIC_URL; default "
    "http://127.0.0.1:$WARREN_GATEWAY_PORT, or 9600].",
)


@url_group.command("create")
@click.argument("name", metavar="NAME[:QUALIFIER]")
@click.option("--qualifier", default=None, help="A version or alias.")
@click.option("--auth-type", type=click.Choice(["NONE", "AWS_IAM"]), default="AWS_IAM",
              show_default=True, help="NONE: anyone may call it; AWS_IAM: SigV4-signed only.")
@public_url_option
@output_option
@click.pass_obj
def url_create(
    obj: Any, name: str, qualifier: str | None, auth_type: str, public_url: str | None,
    output: str
) -> None:
    """Give a function a URL."""
    from warren.client import Client

    fn, qualifier = _target(name, qualifier)
    with Client.from_settings(obj.settings) as client:
        client.get_function(fn, qualifier)  # a URL only for a function that exists
    config = _urls(obj).create(fn, qualifier, auth_type)
    echo(_shape(config, public_url), output)


@url_group.command("get")
@click.argument("name", metavar="NAME[:QUALIFIER]")
@click.option("--qualifier", default=None)
@public_url_option
@output_option
@click.pass_obj
def url_get(
    obj: Any, name: str, qualifier: str | None, public_url: str | None, output: str
) -> None:
    """Show a function's URL and its settings."""
    fn, qualifier = _target(name, qualifier)
    echo(_shape(_urls(obj).get(fn, qualifier), public_url), output)


@url_group.command("delete")
@click.argument("name", metavar="NAME[:QUALIFIER]")
@click.option("--qualifier", default=None)
@click.pass_obj
def url_delete(obj: Any, name: str, qualifier: str | None) -> None:
    """Remove a function's URL (requests to it get 404 within a second)."""
    fn, qualifier = _target(name, qualifier)
    _urls(obj).delete(fn, qualifier)
    click.echo(f"deleted the URL of {name}", err=True)


COMMANDS = [gateway_command, key_group, url_group]
