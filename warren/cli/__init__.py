"""The `warren` command line: the composition root that builds settings for the rooms.

Every command is named here with its module, so `warren --help` lists them without importing
any (the rooms pull in pika, redis and the sandbox: a few hundred ms), and a command's module is
imported only when that command runs. tests/unit/test_cli_lazy.py checks this table against the
modules' own COMMANDS and help texts.
"""

from __future__ import annotations

import click

from warren.cli.root import EXIT_CODES_HELP, LazyGroup

# name -> (module under warren.cli, attribute, the one-line help `warren --help` shows)
COMMANDS: dict[str, tuple[str, str, str]] = {
    "local": ("local", "local_group", "Run handlers on this machine, without a broker or a fleet."),
    "function": ("function", "function_group",
                 "Create, change, inspect, list, delete and publish functions."),
    "alias": ("alias", "alias_group", "Create, repoint, list and delete aliases."),
    "concurrency": ("concurrency", "concurrency_group",
                    "Reserve, clear and show reserved concurrency."),
    "invoke": ("invoke", "invoke_command", "Invoke a function and print its result."),
    "logs": ("logs", "logs_command", "Print a function's invocation logs."),
    "status": ("status", "status_command",
               "Live workers, queue depths and in-flight executions per function."),
    "usage": ("usage", "usage_command",
              "Metered requests, errors, GB-seconds and p50/p99 duration."),
    "cost": ("usage", "cost_command", "What the metered usage would have cost on AWS Lambda."),
    "mapping": ("mapping", "mapping_group",
                "Event source mappings: feed a function from a bucket, a stream, a queue or a "
                "schedule."),
    "topic": ("topic", "topic_group",
              "Topics: one published message reaches every subscribed function (SNS-like)."),
    "worker": ("process", "worker_command", "Run invocations in warm sandboxes."),
    "router": ("process", "router_command",
               "Admit async invocations and forward them; relay topics' messages."),
    "poller": ("process", "poller_command", "Run enabled mappings, each on one poller."),
    "up": ("process", "up_command",
           "Router, worker, poller and gateway in one foreground process tree."),
    "gateway": ("gateway", "gateway_command",
                "Serve Lambda's HTTP API, function URLs, /healthz and /readyz."),
    "key": ("gateway", "key_group", "Access keys the gateway accepts (SigV4)."),
    "url": ("gateway", "url_group", "Function URLs: any HTTP request to one invokes the function."),
}


@click.group(
    cls=LazyGroup,
    lazy_commands=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=EXIT_CODES_HELP,
)
@click.option("--amqp-url", envvar="WARREN_AMQP_URL", help="RabbitMQ URL [env WARREN_AMQP_URL].")
@click.option("--redis-url", envvar="WARREN_REDIS_URL", help="Redis URL [env WARREN_REDIS_URL].")
@click.version_option(package_name="warren")
@click.pass_context
def cli(ctx: click.Context, amqp_url: str | None, redis_url: str | None) -> None:
    """Warren: run Lambda handlers on machines you own.

    Functions are registered once and invoked from anywhere; a fleet of
    workers runs them in sandboxes under Lambda's limits and semantics.
    """
    from warren.cli.root import Root

    ctx.obj = Root(amqp_url, redis_url)


def main() -> None:
    cli.main(prog_name="warren", auto_envvar_prefix="WARREN")
