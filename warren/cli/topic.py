"""`warren topic ...`: SNS-like topics, their subscriptions, and publishing to them."""

from __future__ import annotations

from pathlib import Path

import click

from router.topics import Topics
from warren.cli.compose import build_topics
from warren.cli.output import echo, output_option
from warren.errors import InvalidParameter
from warren.settings import Settings
from warren.topic import Subscription, topic_arn


def _topics(ctx: click.Context, check_functions: bool = False) -> Topics:
    settings: Settings = ctx.find_root().obj.settings
    topics = build_topics(settings, check_functions=check_functions)
    ctx.call_on_close(topics.close)
    ctx.call_on_close(topics.store.redis.close)
    return topics


def _row(s: Subscription) -> dict[str, object]:
    return {"id": s.id, "topic": s.topic, "function": s.function, "raw": s.raw,
            "filter_policy": s.filter_policy or "", "arn": s.arn}


@click.group("topic")
def topic_group() -> None:
    """Topics: one published message reaches every subscribed function (SNS-like)."""


@topic_group.command("create")
@click.argument("name")
@output_option
@click.pass_context
def create_command(ctx: click.Context, name: str, output: str) -> None:
    """Create a topic (idempotent, as SNS's CreateTopic)."""
    _topics(ctx).create(name)
    echo({"name": name, "arn": topic_arn(name)}, output)


@topic_group.command("delete")
@click.argument("name")
@click.pass_context
def delete_command(ctx: click.Context, name: str) -> None:
    """Delete a topic, its subscriptions and their undelivered messages."""
    _topics(ctx).delete(name)
    click.echo(f"deleted topic {name}")


@topic_group.command("list")
@click.argument("name", required=False)
@output_option
@click.pass_context
def list_command(ctx: click.Context, name: str | None, output: str) -> None:
    """List topics, or one topic's subscriptions."""
    topics = _topics(ctx)
    if name is None:
        echo([{"name": n, "arn": topic_arn(n), "subscriptions": len(topics.subscriptions(n))}
              for n in topics.names()], output)
    else:
        echo([_row(s) for s in topics.subscriptions(name)], output)


@topic_group.command("subscribe")
@click.argument("name")
@click.option("--function", required=True, metavar="NAME[:QUALIFIER]")
@click.option("--filter-policy", default=None, metavar="JSON",
              help='SNS filter policy on message attributes, e.g. \'{"kind": ["order"]}\'.')
@click.option("--raw", is_flag=True, help="Deliver the message itself instead of SNS's event.")
@output_option
@click.pass_context
def subscribe_command(ctx: click.Context, name: str, function: str, filter_policy: str | None,
                      raw: bool, output: str) -> None:
    """Subscribe a function: it is invoked asynchronously once per matching message."""
    subscription = _topics(ctx, check_functions=True).subscribe(
        name, function, filter_policy=filter_policy, raw=raw)
    echo(_row(subscription), output)


@topic_group.command("unsubscribe")
@click.argument("name")
@click.argument("subscription_id")
@click.pass_context
def unsubscribe_command(ctx: click.Context, name: str, subscription_id: str) -> None:
    """Remove a subscription (its undelivered messages go with it)."""
    _topics(ctx).unsubscribe(name, subscription_id)
    click.echo(f"unsubscribed {subscription_id} from {name}")


@topic_group.command("publish")
@click.argument("name")
@click.option("--message", required=True, metavar="TEXT|@FILE",
              help="The message, or @path to read it from a file.")
@click.option("--subject", default=None)
@click.option("--attribute", "attributes", multiple=True, metavar="K=V",
              help="A message attribute (K:Number=5, K:String.Array=[...] for other types); "
                   "repeat for more.")
@output_option
@click.pass_context
def publish_command(ctx: click.Context, name: str, message: str, subject: str | None,
                    attributes: tuple[str, ...], output: str) -> None:
    """Publish a message; prints its MessageId once RabbitMQ has confirmed it."""
    if message.startswith("@"):
        try:
            message = Path(message[1:]).read_text()
        except OSError as exc:
            raise InvalidParameter(f"cannot read {message[1:]!r}: {exc.strerror}") from None
    message_id = _topics(ctx).publish(name, message, subject=subject, attributes=attributes)
    echo({"MessageId": message_id}, output)


COMMANDS = [topic_group]
